"""BraVe (Recasens et al. 2021): a narrow video clip and a broad view (its audio) of one video
predict each other's projections (mmv/methods/brave.py).

    python launch.py --config configs/brave.py:runlocal --workdir runs/brave_local

Paper settings (google-deepmind/brave: brave/models/brave/config.py, brave/config.py,
brave/models/brave/brave.py, brave/datasets/spectrograms.py), the released V/A model:
- broad view = the main clip: 64 frames at stride 4 of 25 fps video (10.24 s), 112 px, and its
  audio: 48 kHz, log(1 + 10000·mel), 80 mel bins over 80-7600 Hz, 320-sample window, hop 160;
  BraVe's V/A model feeds only the audio of the broad view to a network (broad_video False).
- narrow view = data view 'narrow': 16 frames at stride 2 (1.28 s), 224 px, starting where the
  broad view starts ('same': brave.py's sampler aligns the narrow view to the broad one's start).
- TSM-ResNet50 (narrow video), audio ResNet-50 (broad audio), one shared projector/predictor
  (4096 hidden, 128 out).
- LARS (momentum 0.9, nesterov, trust coefficient 0.001), weight decay 1e-2 off biases and
  BatchNorm, learning rate 1.0 with 5000 warmup steps and cosine decay to 0 over 300k steps,
  predictor learning rate x10; global batch 512.
Not as BraVe: its crops are random boxes of 30-100% of the area, aspect 0.5-2, with Gaussian
blur and colour drop (brave.py `_transform_views`); here the framework's scale jitter, flip and
colour augmentation. `runlocal` is CPU-sized on data/synthetic (1/8-width backbones, small
clips, a smaller head).
"""

from configs import common


def get_config(arg=None):
  c = common.paper()
  c.method = 'brave'
  c.data.modalities = ('video', 'audio')
  c.data.fps = 25.0
  c.data.num_frames = 64
  c.data.frame_stride = 4
  c.data.crop_size = 112
  c.data.views = (('narrow', 16, 2, 224, 'same', False),)
  c.data.audio_sample_rate = 48000.0
  c.data.stft_window = 320
  c.data.stft_hop = 160
  c.data.num_mel_bins = 80
  c.data.mel_lower_hz = 80.0
  c.data.mel_upper_hz = 7600.0
  c.data.log_offset = 'mmv'
  c.model.video_backbone = 'tsm_resnet50'
  c.model.audio_backbone = 'audio_resnet50'
  c.model.dtype = 'bfloat16'  # Accelerators.
  c.optim.learning_rate = 1.0
  c.optim.warmup_steps = 5000
  c.optim.end_learning_rate_factor = 0.0
  c.optim.weight_decay = 1e-2
  c.train.batch_size = 512
  c.train.steps = 300_000
  if arg == 'runlocal':
    common.on_synthetic_data(c)
    c.data.modalities = ('video', 'audio')
    c.data.fps = 10.0  # The synthetic videos' rate.
    c.data.num_frames = 8
    c.data.frame_stride = 2
    c.data.crop_size = 16
    c.data.views = (('narrow', 4, 1, 32, 'same', False),)
    c.model.width_multiplier = 0.125
    c.model.dtype = 'float32'  # CPU.
    c.brave.hidden_dim = 256
    c.brave.output_dim = 32
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use 'runlocal' or nothing")
  return c
