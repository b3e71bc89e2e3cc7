"""How each benchmark is measured by default: the published protocols, field by field.

`DEFAULTS[name]` is the protocol block `config.eval.NAME` starts from (configs/common.py). Its
fields, by what the benchmark measures (`fields`):
  every benchmark  splits        official splits evaluated (the metric is their mean)
                   fps           frame rate the frames are stored and read at (`prepare`
                                 converts the videos at this rate)
                   max_seconds   clips are drawn from each video's first seconds only (0: all)
                   clip_offsets  where clips start: 'dmvr' | 'mmv' (`CLIP_OFFSETS`)
                   frame_stride  stored frames between the frames of a clip
                   num_frames    frames per clip (for audio: the window is as long as them)
  video            min_resize    short side the frames are resized to (0: kept)
                   crop_size     square crop fed to the model (central, or random in training)
  linear           train_passes  augmented passes over the training videos, one clip each
                   train_flip    random left-right flip of the training clips
                   train_scale_jitter  (min, max) scale of the random training crop; (1, 1): none
                   test_clips    evenly spaced test clips, decision scores averaged
                   classifier    'svm' (StandardScaler + LinearSVC) | 'jax_lbfgs' | 'jax_adam'
                   svm_solver    LinearSVC's dual: 'dual' | 'primal' | 'auto' (svm only)
                   svm_max_iter  LinearSVC's max_iter (svm only)
                   c             one C, or several chosen by cross-validation (`cv_folds` folds)
  mlp              train_passes, test_clips  (as linear)
                   mlp_hidden    widths of the hidden layers (ReLU); () is a linear classifier
                   mlp_epochs, mlp_batch_videos, mlp_learning_rate, mlp_weight_decay,
                   mlp_dropout   its training: AdamW, cosine decay, sigmoid cross-entropy
  retrieval        retrieval_clips  evenly spaced clips whose S_vat embeddings are averaged
  zero_shot        zero_shot_template  the caption made of a class name
  image            splits, min_resize, crop_size, and for linear: train_passes, train_augment
                   (False: the training images are read as the test images, one pass of
                   central crops; True: `train_passes` random crops, with the flip / scale
                   jitter named), train_flip, train_scale_jitter, classifier, svm_*, c,
                   cv_folds. No clip fields: an image is a 1-frame record.
Training clips are a random offset and a random crop (plus the flip and scale named here); test
clips are centrally cropped. Nothing else of the training augmentation (colour) is applied.

Sources:
- UCF101 and HMDB51: DeepMind's released UCF101 linear-evaluation script for MMV
  (deepmind-research, mmv/eval_ucf101.py and mmv/utils/ucf101_dataset.py), which its authors
  state reproduces Table 2 of the paper (S3D-G 89.6, TSM-50 91.5, TSM-50x2 91.8): frames at
  25 fps, 32 frames at stride 2, short side resized to 224 and cropped to 224 (random crop and
  left-right flip for the 10 training passes, central crop for the 10 test windows),
  StandardScaler + LinearSVC(C=0.001) on the video backbone's pooled features, in float32,
  split 1. In its words:
  - its dataset decodes each video with FFmpeg's `-qscale:v 2 -r 25 -t 00:00:20`: at 25 fps
    and only its first 20 seconds (`max_seconds` 20), JPEGs at quality 2 and the video's size
    (the converter stores quality 3 at short side 256, both resized to 224 when read);
  - its test windows start at `tf.linspace(0, L - num_frames * stride, windows)` cast to
    int32, L the video's frames: from 0 to L - 64, truncated (`clip_offsets` 'dmvr');
  - a training clip starts uniformly in [0, L - (num_frames - 1) * stride), or in [0, L) when
    the video has no more than (num_frames - 1) * stride = 62 frames, and frames past the end
    wrap around to the start (its sampling repeats the video) (`clip_offsets` 'dmvr');
  - it reads the TFDS config `Ucf101.BUILDER_CONFIGS[split]`, for split 1 `ucf101_1`: frames at
    their native size (not `ucf101_1_256`, squashed to 256x256: `prepare` records that
    departure when it reads such a build);
  - `LinearSVC(C=0.001)` leaves the rest to the scikit-learn of 2020 (unpinned): the dual
    problem (`dual=True`, today 'auto') and `max_iter=1000` (`svm_solver`, `svm_max_iter`).
  Its sampling functions are DMVR's, hence the name of the rule. HMDB51 uses the same script
  settings (the paper states no other).
- ESC-50: the paper (appendix) says a linear SVM on the audio backbone's features over the 5
  official folds; it does not state the window, the passes, the test clips or C. Those follow
  the UCF101 script (10 passes, 10 clips, C = 0.001) and the training window (3.2 s).
- Kinetics-600: the paper reports linear results on Kinetics-600 without describing how they
  were measured; these settings follow the UCF101 script on the validation list, and no
  paper number is shown beside ours.
- MSRVTT (1k-A test) and YouCook2 (validation), zero-shot text-to-video retrieval: 32 frames
  at stride 2 from 25 fps, 224 central crop, the mean of 4 clip embeddings in S_vat.
- synthetic: the demo's dataset, CPU-sized; no published protocol.
- AudioSet: the MMV paper reports the mAP of an MLP trained on frozen audio features, on the
  official eval segments (multi-label, 527 classes); no source at hand states its hidden size,
  optimiser, epochs, audio windows or training set (balanced or unbalanced), nor the figure
  itself. The block is mmv's: the ESC-50 window (32 frames at 10 fps: 3.2 s, the training
  window), one training pass (a random window per segment: ~2M segments unbalanced), 10 test
  windows whose logits are averaged, one hidden layer of 512, AdamW. Not `PUBLISHED`.
- Moments in Time: no MMV figure; the UCF101 script's clips (32 frames at stride 2 from
  25 fps, 224 crops) on the 3-second videos (all of them: `max_seconds` 0), one training pass
  (~800k videos) and the JAX linear SVM (Adam) with the script's C. Not `PUBLISHED`.
- PASCAL VOC 2007 and ImageNet (images, through the deflated video backbone): the issue states
  what the paper measures (VOC07 mAP as the devkit computes AP on the 4,952 test images after
  training on the 5,011 trainval images; ImageNet top-1 of a linear classifier on frozen
  features, on the 50,000 validation images), but no source at hand states the paper's image
  resize, crop, augmentation, classifier settings or C, nor its figures: these blocks are
  mmv's choice (short side 224 and central 224 crop for VOC, as the video protocols read
  frames; the usual short side 256 and central 224 crop for ImageNet; no augmentation;
  per-class one-vs-rest LinearSVC with C per class by 3-fold CV on VOC, the JAX linear SVM
  for ImageNet's 1.28M images). They are not `PUBLISHED`, so no paper figure is shown.
- synthetic_images: the demo's image benchmark (the synthetic clips' first frames).
`NOT_IN_PAPER[name]` lists the fields of a published protocol that no source states.
"""

import ml_collections

FOLDS = ('1', '2', '3', '4', '5')
CLASSIFIERS = {'svm': 'StandardScaler + scikit-learn LinearSVC',
               'jax_lbfgs': 'standardised features + linear SVM objective, JAX L-BFGS',
               'jax_adam': 'standardised features + linear SVM objective, JAX Adam'}
NO_AUGMENTATION = (1.0, 1.0)

# Where clips start in a video of L frames, a clip spanning S = (num_frames - 1) * stride + 1
# (audio: samples, stride 1). Frames past the end wrap around to the start.
CLIP_OFFSETS = {
    # The released script's (DMVR's): test windows at int(linspace(0, L - num_frames * stride)),
    # truncated; a training offset uniform in [0, L - S], or in [0, L) when L < S.
    'dmvr': 'test windows truncated from linspace(0, L - frames * stride); short videos: a '
            'random training offset in [0, L)',
    # Test windows at round(linspace(0, L - S)), a single one in the middle; a training offset
    # uniform in [0, L - S], 0 when L < S.
    'mmv': 'test windows rounded from linspace(0, L - span); short videos: training offset 0',
}
SVM_SOLVERS = {'dual': True, 'primal': False, 'auto': 'auto'}  # LinearSVC's `dual`.

_CLIP = ('splits', 'fps', 'max_seconds', 'clip_offsets', 'frame_stride', 'num_frames')
_VIDEO = ('min_resize', 'crop_size')
_LINEAR = ('train_passes', 'test_clips', 'classifier', 'svm_solver', 'svm_max_iter', 'c',
           'cv_folds')
_LINEAR_VIDEO = ('train_flip', 'train_scale_jitter')
_MLP = ('train_passes', 'test_clips', 'mlp_hidden', 'mlp_epochs', 'mlp_batch_videos',
        'mlp_learning_rate', 'mlp_weight_decay', 'mlp_dropout')
_IMAGE = ('splits', 'min_resize', 'crop_size')
_LINEAR_IMAGE = ('train_passes', 'train_augment', 'train_flip', 'train_scale_jitter',
                 'classifier', 'svm_solver', 'svm_max_iter', 'c', 'cv_folds')

# DeepMind's released UCF101 script (see the module doc).
_RELEASED_SVM = dict(classifier='svm', svm_solver='dual', svm_max_iter=1000, c=(1e-3,),
                     cv_folds=3)
_RELEASED_SCRIPT = dict(fps=25.0, max_seconds=20.0, clip_offsets='dmvr', frame_stride=2,
                        num_frames=32, min_resize=224, crop_size=224, train_passes=10,
                        train_flip=True, train_scale_jitter=NO_AUGMENTATION, test_clips=10,
                        **_RELEASED_SVM, zero_shot_template='{}')
_RETRIEVAL = dict(fps=25.0, max_seconds=0.0, clip_offsets='mmv', frame_stride=2, num_frames=32,
                  min_resize=224, crop_size=224, retrieval_clips=4)

DEFAULTS = {
    'ucf101': dict(splits=('1',), **_RELEASED_SCRIPT),
    'hmdb51': dict(splits=('1',), **_RELEASED_SCRIPT),
    'kinetics': dict(splits=('val',), **_RELEASED_SCRIPT),
    'esc50': dict(splits=FOLDS, fps=10.0, max_seconds=0.0, clip_offsets='mmv', frame_stride=1,
                  num_frames=32, train_passes=10, test_clips=10, **_RELEASED_SVM),
    'audioset': dict(splits=('eval',), fps=10.0, max_seconds=0.0, clip_offsets='mmv',
                     frame_stride=1, num_frames=32, train_passes=1, test_clips=10,
                     mlp_hidden=(512,), mlp_epochs=10, mlp_batch_videos=1024,
                     mlp_learning_rate=1e-3, mlp_weight_decay=1e-4, mlp_dropout=0.0),
    'moments_in_time': dict(splits=('validation',), **{
        **_RELEASED_SCRIPT, 'max_seconds': 0.0, 'train_passes': 1, 'classifier': 'jax_adam'}),
    'msrvtt': dict(splits=('1k-A',), **_RETRIEVAL),
    'youcook2': dict(splits=('validation',), **_RETRIEVAL),
    # The synthetic dataset's clips (10 fps, 40 px), as tiny.py trains on them; C by CV.
    'synthetic': dict(splits=('test',), fps=10.0, max_seconds=0.0, clip_offsets='mmv',
                      frame_stride=2, num_frames=8, min_resize=0, crop_size=32, train_passes=10,
                      train_flip=False, train_scale_jitter=(0.9, 1.1), test_clips=10,
                      classifier='svm', svm_solver='auto', svm_max_iter=10000,
                      c=(0.01, 0.1, 1.0, 10.0), cv_folds=3, retrieval_clips=4,
                      zero_shot_template='{}'),
}
# Images: no augmentation, one central crop per image on both sides.
_IMAGE_PLAIN = dict(train_passes=1, train_augment=False, train_flip=False,
                    train_scale_jitter=NO_AUGMENTATION, cv_folds=3)
DEFAULTS.update({
    'voc2007': dict(splits=('test',), min_resize=224, crop_size=224, classifier='svm',
                    svm_solver='dual', svm_max_iter=2000, c=(1e-4, 1e-3, 1e-2, 1e-1, 1.0),
                    **_IMAGE_PLAIN),
    'imagenet': dict(splits=('val',), min_resize=256, crop_size=224, classifier='jax_adam',
                     svm_solver='auto', svm_max_iter=1000, c=(1e-4, 1e-3, 1e-2),
                     **_IMAGE_PLAIN),
    # The synthetic frames (40 px) as they are, the central 32 px the tiny model sees.
    'synthetic_images': dict(splits=('test',), min_resize=0, crop_size=32, classifier='svm',
                             svm_solver='auto', svm_max_iter=10000,
                             c=(0.01, 0.1, 1.0, 10.0), **_IMAGE_PLAIN),
})
PUBLISHED = ('ucf101', 'hmdb51', 'esc50', 'msrvtt', 'youcook2')
# Fields that neither the paper nor the released script states for the benchmark: the
# script's UCF101 settings are assumed for HMDB51, its passes, clips and C for ESC-50.
NOT_IN_PAPER = {
    'hmdb51': tuple(k for k in _RELEASED_SCRIPT if k != 'zero_shot_template'),
    'esc50': ('fps', 'clip_offsets', 'frame_stride', 'num_frames', 'train_passes', 'test_clips',
              'svm_solver', 'svm_max_iter', 'c'),
    'msrvtt': ('clip_offsets',),
    'youcook2': ('clip_offsets',),
}
SOURCES = {
    'ucf101': "DeepMind's released UCF101 linear-evaluation script (reproduces the paper's "
              'Table 2)',
    'hmdb51': "DeepMind's released UCF101 linear-evaluation script, on HMDB51",
    'esc50': 'MMV paper appendix (linear SVM on audio features, 5 folds); the rest as UCF101',
    'kinetics': 'the paper does not describe its Kinetics-600 linear protocol; the UCF101 '
                'script\'s settings',
    'msrvtt': 'MMV paper (zero-shot retrieval, 1k-A test split)',
    'youcook2': 'MMV paper (zero-shot retrieval, validation set)',
    'synthetic': 'the demo\'s CPU-sized protocol (not published)',
    'audioset': 'MMV paper (an MLP on frozen audio features, mAP on the eval segments); its '
                'settings are mmv\'s: no source at hand states them',
    'moments_in_time': 'no MMV figure; the UCF101 script\'s clips on the 3-second videos, one '
                       'training pass and the JAX linear SVM (mmv\'s choice)',
    'voc2007': 'mmv\'s own image protocol: no source at hand states the MMV paper\'s VOC07 '
               'settings or figures',
    'imagenet': 'mmv\'s own image protocol: no source at hand states the MMV paper\'s '
                'ImageNet settings or figures',
    'synthetic_images': 'the demo\'s CPU-sized image protocol (not published)',
}


def fields(protocols, modality):
  """The fields a protocol block of a benchmark measuring `protocols` on `modality` has."""
  if modality == 'image':
    return _IMAGE + (_LINEAR_IMAGE if 'linear' in protocols else ())
  out = list(_CLIP) + (list(_VIDEO) if modality == 'video' else [])
  if 'linear' in protocols:
    out += list(_LINEAR) + (list(_LINEAR_VIDEO) if modality == 'video' else [])
  if 'mlp' in protocols:
    out += list(_MLP)
  if 'retrieval' in protocols:
    out.append('retrieval_clips')
  if 'zero_shot' in protocols:
    out.append('zero_shot_template')
  return tuple(out)


def differences(name, block, dtype):
  """Fields of `block` (a dict) and `dtype` that differ from the published protocol of `name`,
  or None when there is none."""
  if name not in PUBLISHED:
    return None
  published = DEFAULTS[name]
  out = [k for k in sorted(block) if _plain(block[k]) != _plain(published.get(k))]
  return out + ([] if dtype == 'float32' else ['dtype'])


def _plain(value):
  return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def eval_config():
  """The `eval` section of every config: the binary's batch and dtype, and a protocol block per
  benchmark at its default."""
  c = ml_collections.ConfigDict()
  # Clips per batch, what the model sees at once (the README says how to size it): whole
  # videos, their clips split evenly over the devices (at least one video per device group).
  c.batch_size = 64
  # The model's compute dtype when evaluating, whatever `model.dtype` trained with: the
  # published numbers are float32 (bfloat16 moved video features by 8 % on a test model).
  c.dtype = 'float32'
  for name, block in DEFAULTS.items():
    c[name] = ml_collections.ConfigDict(block)
  return c
