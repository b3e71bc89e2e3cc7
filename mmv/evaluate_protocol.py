"""A benchmark's protocol block `config.eval.NAME`: its checks, the data config it reads the
prepared videos with, and the settings a record lists (mmv/benchmarks/protocols.py holds the
fields, their defaults and their sources)."""

import copy

import ml_collections

from mmv import inference
from mmv.benchmarks import protocols
from mmv.data import pipeline
from mmv.ingest import images

# What an image block reads: a 1-frame record (`mmv.ingest.images`), its one frame.
IMAGE_CLIP = dict(fps=images.FPS, max_seconds=0.0, clip_offsets='mmv', frame_stride=1,
                  num_frames=1)


def protocol(config, bench):
  """The protocol block `config.eval.NAME` of `bench`."""
  if bench.name not in config.eval:
    raise ValueError(f'the config has no protocol block eval.{bench.name} (a config written '
                     'before evaluation protocols were per benchmark?); pass --config with a '
                     'config file of this version')
  return config.eval[bench.name]


def with_new_fields(config):
  """`config` with the protocol fields added since it was written (a training run's
  config.json of an earlier version) at their defaults, and the names of those added."""
  added = []
  config = copy.deepcopy(config)
  with config.unlocked():
    for name, defaults in protocols.DEFAULTS.items():
      block = config.eval.get(name)
      if block is None and isinstance(config.eval.get('ucf101'), ml_collections.ConfigDict):
        # A benchmark added since the config was written (the image benchmarks).
        config.eval[name] = ml_collections.ConfigDict(defaults)
        added.append(f'eval.{name}')
        continue
      for field, value in defaults.items():
        if block is not None and field not in block:
          block[field] = value
          added.append(f'eval.{name}.{field}')
  return config, added


def check_eval_config(config, bench):
  """Clear errors for `config.eval` settings of `bench` that cannot work."""
  ev, block = config.eval, protocol(config, bench)
  expected = protocols.fields(bench.protocols, bench.modality)
  if set(block) != set(expected):
    raise ValueError(f'eval.{bench.name} must have the fields {sorted(expected)}; it has '
                     f'{sorted(block)}')
  if ev.dtype not in inference.DTYPES:
    raise ValueError(f'eval.dtype must be one of {inference.DTYPES}, got {ev.dtype!r}')
  if ev.batch_size < 1:
    raise ValueError(f'eval.batch_size must be at least 1 (clips), got {ev.batch_size}')
  unknown = [s for s in block.splits if s not in bench.splits]
  if not block.splits or unknown:
    raise ValueError(f'eval.{bench.name}.splits must be among {bench.splits}, got '
                     f'{block.splits}')
  for name in ('frame_stride', 'num_frames', 'crop_size', 'train_passes', 'test_clips',
               'retrieval_clips', 'cv_folds', 'svm_max_iter'):
    if name in block and block[name] < 1:
      raise ValueError(f'eval.{bench.name}.{name} must be at least 1, got {block[name]}')
  clip = clip_settings(bench, block)
  if clip['fps'] <= 0 or block.get('min_resize', 0) < 0 or clip['max_seconds'] < 0:
    raise ValueError(f'eval.{bench.name}: fps must be positive, min_resize and max_seconds '
                     'at least 0')
  if clip['clip_offsets'] not in protocols.CLIP_OFFSETS:
    _check_choice(bench, block, 'clip_offsets', protocols.CLIP_OFFSETS)
  if bench.modality == 'image' and 'linear' in bench.protocols and not block.train_augment and (
      block.train_passes != 1 or block.train_flip or
      tuple(block.train_scale_jitter) != protocols.NO_AUGMENTATION):
    raise ValueError(f'eval.{bench.name}: train_augment is False (the training images are read '
                     'once, as the test images are), so train_passes must be 1, train_flip '
                     'False and train_scale_jitter (1, 1); set train_augment for augmented '
                     'passes')
  if 'mlp' in bench.protocols:
    _check_mlp(bench, block)
  if 'linear' in bench.protocols:
    _check_choice(bench, block, 'classifier', protocols.CLASSIFIERS)
    _check_choice(bench, block, 'svm_solver', protocols.SVM_SOLVERS)
    if not block.c or min(block.c) <= 0:
      raise ValueError(f'eval.{bench.name}.c must be positive C values, got {block.c}')
    jitter = block.get('train_scale_jitter', protocols.NO_AUGMENTATION)
    if len(jitter) != 2 or not 0 < jitter[0] <= jitter[1]:
      raise ValueError(f'eval.{bench.name}.train_scale_jitter must be (min, max) with '
                       f'0 < min <= max, got {jitter}')


def _check_mlp(bench, block):
  for name in ('mlp_epochs', 'mlp_batch_videos'):
    if block[name] < 1:
      raise ValueError(f'eval.{bench.name}.{name} must be at least 1, got {block[name]}')
  if any(w < 1 for w in block.mlp_hidden) or not 0 <= block.mlp_dropout < 1 or (
      block.mlp_learning_rate <= 0 or block.mlp_weight_decay < 0):
    raise ValueError(f'eval.{bench.name}: mlp_hidden must be widths of at least 1, mlp_dropout '
                     'in [0, 1), mlp_learning_rate positive and mlp_weight_decay at least 0; got '
                     f'{tuple(block.mlp_hidden)}, {block.mlp_dropout}, '
                     f'{block.mlp_learning_rate}, {block.mlp_weight_decay}')


def _check_choice(bench, block, name, choices):
  if block[name] not in choices:
    raise ValueError(f'eval.{bench.name}.{name} must be one of {tuple(choices)}, got '
                     f'{block[name]!r}')


def replace(data_config, **changes):
  """A copy of `data_config` with `changes`."""
  c = copy.deepcopy(data_config)
  with c.unlocked():  # `clip_offsets` is a field of evaluation's data configs only.
    for k, v in changes.items():
      c[k] = v
  return c


def clip_settings(bench, block):
  """{fps, max_seconds, clip_offsets, frame_stride, num_frames} of `block`: its own, or for an
  image benchmark those of its 1-frame records (`IMAGE_CLIP`)."""
  if bench.modality == 'image':
    return dict(IMAGE_CLIP)
  return {k: block[k] for k in IMAGE_CLIP}


def check_prepared(config, bench, prepared):
  """A clear error when `prepared` is not stored at the protocol block's frame rate."""
  block = protocol(config, bench)
  if bench.modality == 'image':
    if float(prepared.fps) != images.FPS:
      raise ValueError(f'{bench.name} split {prepared.split} ({prepared.data_dir}) is not '
                       'stored as 1-frame image records')
    return
  if float(prepared.fps) != float(block.fps):
    raise ValueError(f'{bench.name} split {prepared.split} is stored at {prepared.fps} fps '
                     f'({prepared.data_dir}), but eval.{bench.name}.fps is {block.fps}: '
                     f'prepare it at {block.fps} fps (the evaluation binary does for raw '
                     f'layouts) or set eval.{bench.name}.fps')


def benchmark_data_config(config, bench, prepared):
  """The data config reading `prepared` by the protocol `config.eval.NAME`: its clips, resize,
  crop and training augmentation, nothing of the training run's augmentation; the training
  run's input format (normalisation, audio features) and vocabulary."""
  block = protocol(config, bench)
  clip = clip_settings(bench, block)
  vocab = pipeline.run_vocabulary(config.data, 'to encode text')
  video = bench.modality in ('video', 'image')
  augment = video and 'linear' in bench.protocols and block.get('train_augment', True)
  # Multi-label images (VOC) read every label of a record, multi-hot.
  multi = multi_label(bench, prepared)
  c = replace(config.data, data_dir=prepared.data_dir, vocab=vocab,
              mixture=(), train_split='train', test_split='test', with_names=False,
              label_format='multi_hot' if multi else 'index',
              num_classes=len(prepared.class_names) if multi else 0,
              modalities=('video',) if video else ('audio',),
              fps=float(clip['fps']), max_seconds=float(clip['max_seconds']),
              clip_offsets=clip['clip_offsets'],
              frame_stride=clip['frame_stride'], num_frames=clip['num_frames'], num_test_clips=1,
              color_augment=False, random_flip=bool(augment and block.train_flip),
              scale_jitter=(tuple(block.train_scale_jitter) if augment
                            else protocols.NO_AUGMENTATION))
  if video:
    c.min_resize, c.crop_size = block.min_resize, block.crop_size
  return c


MULTI_LABEL = ('voc2007', 'audioset')


def multi_label(bench, prepared=None):
  """Whether `bench` reads its records' labels multi-hot: VOC's images (classes and their
  difficult twins), AudioSet's segments (every label of a segment)."""
  del prepared
  return bench.name in MULTI_LABEL


def protocol_settings(config, bench, splits, departures=()):
  """Every setting `bench` is measured with on `splits`, and whether that is the published
  protocol, for the record. `departures`: how the prepared videos depart from the published
  input (`Prepared.departures`)."""
  block = protocol(config, bench).to_dict()
  block['splits'] = list(splits)
  video = bench.modality == 'video'
  differs = protocols.differences(bench.name, block, config.eval.dtype)
  if differs is not None:
    differs += list(dict.fromkeys(departures))
  if bench.modality == 'image':
    return image_settings(config, bench, block, differs)
  out = {'protocols': list(bench.protocols), 'source': protocols.SOURCES[bench.name],
         'published': differs == [], 'modality': bench.modality, 'dtype': config.eval.dtype,
         'fps': block['fps'], 'max_seconds': block['max_seconds'] or 'whole videos',
         'clip_offsets': f'{block["clip_offsets"]}: '
                         f'{protocols.CLIP_OFFSETS[block["clip_offsets"]]}',
         'frame_stride': block['frame_stride'], 'frames': block['num_frames'],
         'clip_seconds': block['num_frames'] * block['frame_stride'] / block['fps']}
  if differs:
    out['differs_from_published'] = differs
  if bench.name in protocols.NOT_IN_PAPER:
    out['not_in_paper'] = list(protocols.NOT_IN_PAPER[bench.name])
  if video:
    out.update(resize_short_side=block['min_resize'] or 'kept', crop=block['crop_size'])
  if 'linear' in bench.protocols:
    out['linear'] = _linear_settings(config, block, video)
  if 'mlp' in bench.protocols:
    out['mlp'] = mlp_settings(config, block)
  if 'retrieval' in bench.protocols:
    out['retrieval'] = {
        'clips': block['retrieval_clips'], 'crop': f'central {block["crop_size"]}',
        'space': 'S_vat', 'caption': "each video's first", 'clip_average':
        'normalise, average, normalise'}
  if 'zero_shot' in bench.protocols:
    out['zero_shot'] = {'template': block['zero_shot_template'], 'clips': block['test_clips'],
                        'space': 'S_vat'}
  return out


def _linear_settings(config, block, video):
  train_clip = ['random offset']
  if video:
    train_clip.append(f'random crop {block["crop_size"]}')
    if tuple(block['train_scale_jitter']) != protocols.NO_AUGMENTATION:
      train_clip.append(f'scale jitter {list(block["train_scale_jitter"])}')
    if block['train_flip']:
      train_clip.append('left-right flip')
  c = block['c']
  classifier = protocols.CLASSIFIERS[block['classifier']]
  if block['classifier'] == 'svm':
    classifier += f' (solver {block["svm_solver"]}, max_iter {block["svm_max_iter"]})'
  return {
      'features': 'pooled output of ' + (config.model.video_backbone if video
                                          else config.model.audio_backbone),
      'train_passes': block['train_passes'], 'train_clip': ', '.join(train_clip),
      'test_clips': block['test_clips'],
      'test_clip': 'evenly spaced' + (f', central crop {block["crop_size"]}' if video else ''),
      'classifier': classifier,
      **({'C': c[0]} if len(c) == 1 else {'c_grid': list(c), 'cv_folds': block['cv_folds']}),
      'scores': 'decision scores averaged over the test clips'}



def mlp_settings(config, block):
  """The MLP probe's settings, for the record."""
  hidden = list(block['mlp_hidden'])
  return {
      'features': f'pooled output of {config.model.audio_backbone}',
      'train_passes': block['train_passes'], 'train_clip': 'random offset',
      'test_clips': block['test_clips'], 'test_clip': 'evenly spaced',
      'labels': 'every label of a clip (multi-hot)',
      'classifier': (f'standardised features → MLP, hidden {hidden} (ReLU'
                     f'{", dropout " + str(block["mlp_dropout"]) if block["mlp_dropout"] else ""}'
                     ') → one logit per class' if hidden else
                     'standardised features → linear, one logit per class'),
      'loss': 'sigmoid cross-entropy, mean over classes and clips',
      'optimiser': f'AdamW, learning rate {block["mlp_learning_rate"]} with cosine decay, '
                   f'weight decay {block["mlp_weight_decay"]}',
      'epochs': block['mlp_epochs'], 'batch_videos': block['mlp_batch_videos'],
      'devices': 'data parallel over every device of the mesh',
      'scores': 'logits averaged over the test clips',
      'metrics': 'mAP and AUC: macro means over classes with a positive and a negative test '
                 "clip (percent); d_prime = sqrt(2) * Phi^-1(mean AUC)"}


def image_settings(config, bench, block, differs):
  """`protocol_settings` of an image benchmark (no clips: 1-frame records)."""
  augment = block['train_augment']
  train = 'as the test images' if not augment else ', '.join(
      [f'{block["train_passes"]} passes of random crops {block["crop_size"]}'] +
      ([f'scale jitter {list(block["train_scale_jitter"])}']
       if tuple(block['train_scale_jitter']) != protocols.NO_AUGMENTATION else []) +
      (['left-right flip'] if block['train_flip'] else []))
  c = block['c']
  classifier = protocols.CLASSIFIERS[block['classifier']]
  if block['classifier'] == 'svm':
    classifier += f' (solver {block["svm_solver"]}, max_iter {block["svm_max_iter"]})'
  if multi_label(bench):
    classifier = ('one binary ' + classifier + ' per class (one-vs-rest), C per class; images '
                  'difficult for a class in neither its positives nor its negatives')
  out = {'protocols': list(bench.protocols), 'source': protocols.SOURCES[bench.name],
         'published': differs == [], 'modality': 'image', 'dtype': config.eval.dtype,
         'image_model': image_model(config),
         'stored': 'one JPEG frame per image, short side as converted (mmv.ingest.images)',
         'resize_short_side': block['min_resize'] or 'kept', 'crop': block['crop_size']}
  if differs:
    out['differs_from_published'] = differs
  out['linear'] = {
      'features': f'pooled output of the deflated {config.model.video_backbone}',
      'train_images': train, 'test_images': f'central crop {block["crop_size"]}, one view',
      'classifier': classifier,
      **({'C': c[0]} if len(c) == 1 else {'c_grid': list(c), 'cv_folds': block['cv_folds']}),
      'metric': ('mAP: mean over classes of the VOC2007 devkit\'s 11-point AP, difficult '
                 'images left out' if multi_label(bench) else 'top-1 / top-5 accuracy')}
  return out


def image_model(config):
  """How the image model was made from the video model, for the record: a workdir written by
  `mmv.tools.deflate` (BatchNorm re-fitted) or the video model deflated as it is."""
  if config.model.get('deflated', False):
    return 'deflated video backbone of a workdir written by mmv.tools.deflate (BatchNorm re-fit)'
  return 'video backbone deflated on the fly, no BatchNorm re-fit'
