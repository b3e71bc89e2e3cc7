"""What a fine-tuning run is made of: its config from a fine-tuning config, the pretrained
run's config and a prepared benchmark split, and every setting a record lists, with where each
value comes from.

Sources (`SOURCES`):
- the MMV paper's appendix, as its first author quotes it (antoine77340/S3D_HowTo100M issue
  7): SGD with momentum 0.9, the learning rate multiplied by gamma at given steps, weight decay
  on the linear classifier's variables only. Its per-dataset values (its Table 5) are not at
  hand.
- GDT's released fine-tuning script (facebookresearch/GDT scripts/run_finetune.sh with
  eval_video.py), the defaults where MMV's values are missing: 12 epochs, batch 32, backbone
  lr 2.5e-4, classifier lr 2.5e-3, weight decay 5e-3, momentum 0.9, 2 warm-up epochs, lr × 0.05
  at epochs 6 and 10, 32-frame clips, colour jitter, 10 training clips per video, 10 clips × 3
  crops at test (scores averaged), no dropout, BatchNorm in training mode.
- no source at hand: the rest (`NO_SOURCE`), mmv's choices: the clip input of the released
  linear script (25 fps, stride 2, short side 224, 224 crops, first 20 s), the flip and scale
  jitter of the training crops, MMV's colour augmentation values, the warm-up's start factor
  (torchvision's reference scheduler's 1e-5), and that the batch of 32 is global (GDT's script
  runs 8 GPUs; whether 32 is per GPU is not stated there).
"""

import copy
import os

from mmv.data import pipeline
from mmv.methods import finetune as ft_method

MMV_APPENDIX = 'MMV paper appendix (quoted by its first author, S3D_HowTo100M issue 7)'
GDT_SCRIPT = "GDT's released fine-tuning script (scripts/run_finetune.sh, eval_video.py)"
FROM_MMV = ('momentum', 'optimizer', 'schedule', 'weight_decay_on')
FROM_GDT = ('epochs', 'batch_size', 'base_learning_rate', 'classifier_learning_rate',
            'weight_decay', 'momentum', 'warmup_epochs', 'decay_epochs', 'decay_factor',
            'num_frames', 'train_color_augment', 'clips_per_video', 'test_clips', 'test_crops',
            'dropout', 'batch_norm')
NO_SOURCE = ('fps', 'max_seconds', 'clip_offsets', 'frame_stride', 'min_resize', 'crop_size',
             'train_flip', 'train_scale_jitter', 'warmup_factor', 'colour jitter values',
             'batch_size is global (over all devices)')
# The paper's per-dataset values that no source at hand states (GDT's stand in for them).
MMV_UNKNOWN = ('epochs', 'batch_size', 'base_learning_rate', 'classifier_learning_rate',
               'weight_decay', 'warmup_epochs', 'decay_epochs', 'decay_factor', 'dropout',
               'batch_norm', 'clip input', 'test clips and crops')
SOURCES = {'mmv': MMV_APPENDIX, 'gdt': GDT_SCRIPT}
# Data fields of the run that the fine-tuning block sets.
_DATA = {'fps': 'fps', 'max_seconds': 'max_seconds', 'clip_offsets': 'clip_offsets',
         'num_frames': 'num_frames', 'frame_stride': 'frame_stride', 'min_resize': 'min_resize',
         'crop_size': 'crop_size', 'random_flip': 'train_flip',
         'scale_jitter': 'train_scale_jitter', 'color_augment': 'train_color_augment'}


def run_config(ft_config, pretrained, prepared, *, pretrained_workdir, pretrained_step):
  """The training config of a fine-tuning run (locked): `ft_config` (a configs/finetune_*.py
  config) with the pretrained run's model (`pretrained`: its config) and input format, reading
  `prepared` (a `benchmarks.Prepared` split), the backbone from checkpoint `pretrained_step` of
  `pretrained_workdir` ('' and -1: from scratch), and the train steps of its epochs."""
  c = copy.deepcopy(ft_config)
  f = c.finetune
  with c.unlocked():
    c.method = 'finetune'
    # The pretrained backbone, as it was built (fields of older configs at today's defaults).
    for key, value in pretrained.model.items():
      if key in c.model:
        c.model[key] = value
    c.data.normalization = pretrained.data.normalization
    # The pretrained run's vocabulary, where it is at hand: evaluation (`mmv.evaluate` of the
    # fine-tuned workdir) asks for the run's.
    vocab = pipeline.vocab_path(pretrained.data)
    if os.path.exists(vocab):
      c.data.vocab = os.path.abspath(vocab)
    f.benchmark, f.split = prepared.benchmark, str(prepared.split)
    f.num_classes, f.train_videos = len(prepared.class_names), int(prepared.train.num_clips)
    f.pretrained, f.pretrained_step = pretrained_workdir, int(pretrained_step)
    c.data.data_dir, c.data.mixture = prepared.data_dir, ()
    c.data.train_split, c.data.test_split = prepared.train.split, prepared.test.split
    c.data.modalities, c.data.views, c.data.with_names = ('video',), (), False
    c.data.label_format, c.data.num_classes, c.data.num_test_clips = 'index', 0, f.test_clips
    for key, field in _DATA.items():
      c.data[key] = f[field]
    c.data.crop_position = 'centre'  # Each test pass sets its own (`finetune_eval`).
    c.train.batch_size = f.batch_size
    c.train.steps = ft_method.total_steps(c)
  c.lock()
  ft_method.check_config(c)
  return c


def settings(config):
  """Every setting of the run `config` (a `run_config`), for the record: the block, the steps
  its epochs came to, the model, and where each value comes from."""
  f = config.finetune.to_dict()
  steps = {'steps_per_epoch': ft_method.steps_per_epoch(config),
           'train_steps': config.train.steps,
           'warmup_steps': ft_method.epoch_step(config, f['warmup_epochs']),
           'decay_steps': [ft_method.epoch_step(config, e) for e in f['decay_epochs']]}
  return {
      'protocols': ['finetune'],
      'source': {'optimiser form (SGD, momentum 0.9, lr × gamma at steps, weight decay on '
                 'the classifier only)': MMV_APPENDIX,
                 'values of ' + ', '.join(FROM_GDT): GDT_SCRIPT},
      'published': False,
      'not_stated_by_any_source': list(NO_SOURCE),
      'mmv_values_unknown': list(MMV_UNKNOWN),
      'pretrained': {'workdir': f['pretrained'] or 'none (from scratch)',
                     'step': f['pretrained_step']},
      'backbone': config.model.video_backbone, 'dtype': config.model.dtype,
      'optimiser': ('SGD (momentum, torch-style: weight decay added to the classifier\'s '
                    'gradient); backbone and classifier rates scaled by the same schedule: '
                    'linear warm-up from warmup_factor, × decay_factor at each decay epoch'),
      'finetune': f, **steps,
      'seed': config.seed,
      'train_clip': ', '.join(
          ['random offset', f'random crop {f["crop_size"]}'] +
          ([f'scale jitter {list(f["train_scale_jitter"])}'] if tuple(
              f['train_scale_jitter']) != (1.0, 1.0) else []) +
          (['left-right flip'] if f['train_flip'] else []) +
          (['MMV colour augmentation'] if f['train_color_augment'] else [])),
      'test': (f'{f["test_clips"]} evenly spaced clips x {f["test_crops"]} crops '
               f'({"start, centre and end of the long side" if f["test_crops"] == 3 else "central"}'
               f' {f["crop_size"]}), softmax scores averaged'),
  }

