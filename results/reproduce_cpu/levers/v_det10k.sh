cd /tmp/snap2/main
R=runs/reproduce_cpu/datasets
python -m advgen.cli verify recipes/fast/verify.yaml --only d_det,d_rand \
  name=exp_det10k report_dir=/tmp/exp/det10k source.path=../shared/data/cifar10 source.limit=10000 source.test_limit=1000 \
  model.width=16 train.batch_size=256 train.epochs=$1 airbench.label_smoothing=0.0 seeds=[0] eval.extra_eps=[] eval.shifted_labels=true eval.steps=5 \
  datasets.d_robust.path=$R/d_robust datasets.d_nonrobust.path=$R/d_nonrobust datasets.d_det.path=/tmp/exp/d_det_10k datasets.d_rand.path=$R/d_rand \
  datasets.d_det_npy.path=$R/d_det datasets.d_rand_npy.path=$R/d_rand datasets.d_det_leak.path=$R/d_det datasets.d_rand_leak.path=$R/d_rand \
  > /tmp/exp/det10k_$1.log 2>&1
grep -ao "seed [0-9]: std acc [0-9.]*, robust acc [0-9.]*" /tmp/exp/det10k_$1.log
