"""GDT (Patrick et al. 2021) on Kinetics-400 as facebookresearch/GDT's
scripts/pretrain_gdt_k400.sh trains it: R(2+1)D-18 and the audio ResNet-9, MLP heads to 256-d,
NCE at temperature 0.07 over a global batch of 128 (16 GPUs x 8), SGD (see mmv/methods/gdt.py),
30 frames at 30 fps cropped to 112, 1 s of 24 kHz audio as 40 log-mel bins (20 ms windows,
10 ms hops), 201 epochs.

    python launch.py --config configs/gdt.py --workdir runs/gdt --config.data.data_dir=K400
    python launch.py --config configs/gdt.py:runlocal --workdir runs/gdt_local   # CPU, synthetic

`--config.gdt.hypothesis=N` picks GDT's hypothesis (1-9, mmv/gdt_loss.py); the script's default
is 1. Approximations of GDT's input pipeline: its short side is rescaled to [128, 160] before
the 112 crop (here min_resize 128 and scale jitter up to 1.25); its log filterbank
(python_speech_features, z-normalised with GDT's constants) is the pipeline's log-mel here; its
SpecAugment and volume jitter are not done; its clip and reversed clip get separate
augmentations, here they share theirs. `config.optim` is not used by GDT (config.gdt has its
SGD settings), nor are `config.model.head`, `va_dim`, `vat_dim` or `config.loss`.
"""

from configs import common

# The time-shifted clip: as long as the main clip, placed independently (GDT draws the two
# clip indices independently: datasets/GDTPretrainDataset.py, `self.sync` False), with audio.
SHIFTED = ('shifted', 'independent', True)


def _shifted_view(c):
  name, placement, with_audio = SHIFTED
  return ((name, c.data.num_frames, c.data.frame_stride, c.data.crop_size, placement,
           with_audio),)


def get_config(arg=None):
  c = common.paper()
  c.method = 'gdt'
  c.model.video_backbone = 'r2plus1d_18'
  c.model.audio_backbone = 'audio_resnet9'
  c.model.dtype = 'bfloat16'  # Accelerators (GDT trains in float32; --apex off).
  c.data.modalities = ('video', 'audio')
  c.data.num_frames = 30  # --clip_len 30 at --target_fps 30, --sample_rate 1.
  c.data.fps = 30.0
  c.data.frame_stride = 1
  c.data.crop_size = 112  # --train_crop_size.
  c.data.min_resize = 128  # train_jitter_scles (128, 160).
  c.data.scale_jitter = (1.0, 1.25)
  c.data.normalization = 'imagenet'  # The nearest: GDT uses mean 0.45, std 0.225 per channel.
  c.data.audio_sample_rate = 24000.0  # --aud_sample_rate.
  c.data.stft_window = 480  # winlen 0.02 s (datasets/audio_utils.py get_spec).
  c.data.stft_hop = 240  # winstep 0.01 s.
  c.data.num_mel_bins = 40  # nfilt 40 (--aud_spec_type 1).
  c.data.mel_lower_hz = 0.0
  c.data.mel_upper_hz = 12000.0
  c.data.log_offset = 'dmvr'  # log(mel + 1e-6): a plain log, as logfbank's.
  c.train.batch_size = 128  # --batch_size 8 per GPU x 16 GPUs.
  c.train.steps = 201 * 1800  # 201 epochs of ~230k videos at 128 a batch.
  if arg == 'runlocal':
    common.on_synthetic_data(c)
    c.data.modalities = ('video', 'audio')
    c.data.min_resize = 0
    c.data.scale_jitter = (0.9, 1.1)
    c.data.normalization = 'unit'
    # The tiny backbones: R(2+1)D-18 and ResNet-9 at 1/8 width (width_multiplier 0.125, the
    # paper configs' runlocal) took ~5x longer a step on a shared 2-core CPU.
    c.model.video_backbone = 'tiny_video'
    c.model.audio_backbone = 'tiny_audio'
    c.model.width_multiplier = 0.125
    c.model.dtype = 'float32'
    c.gdt.head_hidden = 128
    c.gdt.head_dim = 64
    c.gdt.warmup_multiplier = 4.0  # Batch 32: a quarter of GDT's 128.
    c.gdt.warmup_steps = 50
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use 'runlocal' or nothing")
  c.data.views = _shifted_view(c)  # GDT's loader decodes both clips (--dualdata True).
  return c
