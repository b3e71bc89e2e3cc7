"""The fields every config has, at the MMV paper's values, and the CPU-sized
settings for the synthetic dataset that tiny.py and every paper config's `runlocal` share.

Every config starts from `paper()`, so all configs have the same fields: an override that works
for one works for all, and a field added here reaches every config.
"""

import ml_collections

from mmv import deflate_fit
from mmv import methods
from mmv.benchmarks import protocols

# Frequent English function words; captions keep up to `max_words` of the rest.
STOP_WORDS = (
    'a', 'an', 'the', 'and', 'or', 'but', 'if', 'then', 'so', 'of', 'to', 'in', 'on', 'at', 'by',
    'for', 'with', 'from', 'as', 'is', 'are', 'was', 'were', 'be', 'been', 'it', 'its', 'this',
    'that', 'these', 'those', 'i', 'you', 'we', 'he', 'she', 'they', 'me', 'my', 'your', 'our',
    'do', 'does', 'did', 'have', 'has', 'had', 'will', 'would', 'can', 'just', 'um', 'uh',
)


def paper():
  """MMV as published: 32 frames at 10 fps, 200x200 crops, 48 kHz log-mel, FAC heads into
  S_va (512) and S_vat (256), Adam 0.002 with 5K warmup and cosine decay, global batch 4096."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  # What the run learns (mmv/methods/): 'mmv', or another method with its configs/NAME.py.
  c.method = 'mmv'

  c.data = ml_collections.ConfigDict()
  c.data.data_dir = ''  # Shards and vocab.txt; see the README's Datasets section.
  c.data.train_split = 'train'
  c.data.test_split = 'test'
  # Training mixture: ((data_dir, split, weight), ...), each batch split by weight between
  # them (e.g. HowTo100M and AudioSet); empty reads data_dir/train_split alone.
  c.data.mixture = ()
  c.data.vocab = 'vocab.txt'  # Relative to data_dir unless absolute.
  c.data.modalities = ('video', 'audio', 'text')
  c.data.num_frames = 32
  c.data.frame_stride = 1  # In stored frames: 1 for videos stored at `fps`.
  c.data.num_test_clips = 1  # Evaluation: 1 = the middle clip; N = N evenly spaced clips.
  c.data.crop_size = 200
  c.data.fps = 10.0  # Frame rate the clip length (and the audio window) is planned for.
  c.data.min_resize = 0  # Resize the short side to this before cropping; 0 keeps the size.
  c.data.random_flip = True
  c.data.color_augment = True
  c.data.scale_jitter = (0.8, 1.2)
  c.data.normalization = 'unit'  # 'unit': [0, 1]; 'centered': [-1, 1]; 'imagenet': mean/std.
  c.data.audio_format = 'log_mel'  # Or 'waveform'.
  c.data.audio_sample_rate = 48000.0
  c.data.stft_window = 2048  # 42.7 ms.
  c.data.stft_hop = 1024  # 21.3 ms.
  c.data.num_mel_bins = 80
  c.data.mel_lower_hz = 80.0
  c.data.mel_upper_hz = 7600.0
  c.data.log_offset = 'mmv'  # 'mmv': log(1 + 10000 mel); 'dmvr': log(mel + 1e-6).
  c.data.max_words = 16
  c.data.num_captions = 5  # K candidate captions per clip for MIL-NCE.
  c.data.stop_words = STOP_WORDS
  c.data.label_format = 'index'  # Or 'one_hot' / 'multi_hot' (with num_classes).
  c.data.num_classes = 0
  c.data.with_names = False  # Adds `filename` and `label_name` (evaluation only: strings).
  # Extra views of each training example beside the main clip, for methods that compare clips
  # of one video: ((name, num_frames, frame_stride, crop_size, placement, with_audio), ...),
  # placement 'independent' | 'within' (inside the main clip's time span) | 'same' (its start);
  # each adds video_<name> (and audio_<name>) to the batch. See mmv/data/views.py.
  c.data.views = ()
  # Adds `key` int32 [2] to each example: the record's fingerprint (mmv/data/keys.py).
  c.data.with_keys = False
  c.data.strict = False  # True: a bad record is an error naming its file, not a skip.
  c.data.shuffle_buffer = 4096
  c.data.prefetch = 2

  c.model = ml_collections.ConfigDict()
  c.model.video_backbone = 's3d_g'  # s3d_g | tsm_resnet50 | tsm_resnet50x2 | tiny_video.
  c.model.audio_backbone = 'audio_resnet50'  # audio_resnet50 | audio_resnet18 | tiny_audio.
  c.model.width = 32  # Base width of the tiny backbones only.
  c.model.width_multiplier = 1.0  # Channel multiplier of the paper backbones; 1 = the paper.
  c.model.space_to_depth = False  # s3d_g only: the released checkpoint's input layout and stem.
  c.model.dtype = 'float32'  # Compute dtype: 'float32' or 'bfloat16' (params, losses: float32).
  c.model.remat = False  # Recompute backbone blocks in the backward pass (paper backbones).
  c.model.word_embedding_dim = 300
  # word2vec file (text or binary, .gz ok) whose vectors are frozen as the word embeddings;
  # '' learns them from scratch. The paper: GoogleNews-vectors-negative300.bin.gz.
  c.model.word2vec = ''
  c.model.word2vec_max_words = 65536  # Only the N most frequent word2vec words are used.
  c.model.text_hidden = 2048
  c.model.head = 'fac_relu'  # 'shared' | 'disjoint' | 'fac_relu' | 'fac_bnrelu'.
  # MMV's towers: video and one or both of audio, text (each needs its data.modalities entry).
  # ('video', 'audio'): the paper's "VA only" models; ('video', 'text'): MIL-NCE's.
  c.model.towers = ('video', 'audio', 'text')
  c.model.va_dim = 512  # S_va.
  c.model.vat_dim = 256  # S_vat.
  c.model.bn_decay = 0.9
  c.model.bn_eps = 1e-5
  # The video backbone in its image mode (mmv/models/deflate.py): what `python -m
  # mmv.tools.deflate` writes in the config.json of the image model it makes.
  c.model.deflated = False

  c.loss = ml_collections.ConfigDict()
  c.loss.temperature = 0.07
  # λ_va : λ_vt = 1 : 1 for HowTo100M + AudioSet; the paper reports 10 : 1 for HowTo100M alone.
  c.loss.weight_va = 1.0
  c.loss.weight_vt = 1.0
  # 'dense': XLA gathers the global batch's embeddings and builds the B×B similarities.
  # 'chunked': a ring over the devices (mmv/chunked_losses.py); memory linear in the batch.
  c.loss.implementation = 'dense'
  c.loss.chunk_size = 1024  # Candidates per block of the chunked loss.

  # The batch is split over every device; parameters (and their Adam moments) whose name
  # matches a rule's regex first are replicated or split over `fsdp` (their largest divisible
  # dimension), e.g. ((r'backbone/.*kernel', 'fsdp'), ('.*', 'replicate')).
  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # Devices along `data`; -1: all that `fsdp` leaves.
  c.mesh.fsdp = 1
  c.mesh.param_rules = (('.*', 'replicate'),)

  c.optim = ml_collections.ConfigDict()
  c.optim.learning_rate = 2e-3
  c.optim.warmup_steps = 5000
  c.optim.end_learning_rate_factor = 0.0  # Half-period cosine to 0.
  c.optim.weight_decay = 0.0

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 4096  # Global, over all devices of all processes.
  c.train.steps = 500_000  # The paper does not state it: size it to the compute budget.
  c.train.log_every = 100
  c.train.checkpoint_every = 5000
  c.train.max_to_keep = 3
  # Micro-batches per step (gradient accumulation): the negatives still come from the whole
  # batch (GradCache, see train_step.cached_loss_and_grads); 1 = one pass.
  c.train.microbatches = 1
  c.train.nonfinite = 'stop'  # A NaN/inf loss: 'stop' (keeping the last checkpoint) | 'skip'.
  # Resuming from a checkpoint whose optimiser state does not fit this config (another
  # optimiser, e.g. optim.weight_decay 0 -> 1e-4 turns Adam into AdamW) is refused, naming what
  # differs. True restores its step, params, BatchNorm statistics and data position, with a
  # new optimiser state (zero moments; the learning-rate schedule goes on from the step); a
  # checkpoint that fits is still restored whole, so the flag can stay in the relaunch command.
  c.train.restore_params_only = False

  # Each other method's own settings, config.NAME (MMV's are model and loss above).
  for name, block in methods.config_blocks().items():
    c[name] = block

  # The BN re-fit of a deflated model (python -m mmv.tools.deflate).
  c.deflate = deflate_fit.config_fields()

  c.profile_steps = ()  # (first, last): a profiler trace of these steps in workdir/profile.

  # The evaluation binary (python -m mmv.evaluate). One protocol block per benchmark, at the
  # published protocol by default (fields and sources: mmv/benchmarks/protocols.py).
  c.eval = protocols.eval_config()
  return c


def on_synthetic_data(c):
  """`c` sized for CPU on the synthetic dataset: data, heads, text and training (not backbones).

  Flipping and colour jitter would change what the synthetic captions describe (left/right,
  colour names), so they stay off.
  """
  c.data.data_dir = 'data/synthetic'
  c.data.num_frames = 8
  c.data.frame_stride = 2
  c.data.crop_size = 32
  c.data.random_flip = False
  c.data.color_augment = False
  c.data.scale_jitter = (0.9, 1.1)
  c.data.audio_sample_rate = 4000.0
  c.data.stft_window = 256
  c.data.stft_hop = 128
  c.data.num_mel_bins = 32
  c.data.mel_upper_hz = 1900.0
  c.data.max_words = 8
  c.data.num_captions = 2
  c.data.stop_words = ('a', 'the', 'is', 'and', 'with', 'then')
  c.data.shuffle_buffer = 512
  c.model.word_embedding_dim = 64
  c.model.word2vec = ''
  c.model.text_hidden = 128
  c.model.va_dim = 128
  c.model.vat_dim = 64
  c.optim.warmup_steps = 50
  c.train.batch_size = 32
  c.train.steps = 600
  c.train.log_every = 20
  c.train.checkpoint_every = 200
  return c


def paper_backbones(video_backbone, arg):
  """A paper config with `video_backbone`; `arg` 'runlocal' shrinks it for a CPU run on the
  synthetic dataset (the backbones at 1/8 width, in float32), None keeps the paper's sizes."""
  c = paper()
  c.model.video_backbone = video_backbone
  c.model.dtype = 'bfloat16'  # Accelerators.
  if arg == 'runlocal':
    on_synthetic_data(c)
    c.model.width_multiplier = 0.125
    c.model.dtype = 'float32'  # CPU: XLA:CPU runs float32 about 1.5x faster than bfloat16.
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use 'runlocal' or nothing")
  return c


def finetune(arg=None):
  """A fine-tuning config (`python -m mmv.finetune`; mmv/methods/finetune.py): the `finetune`
  block at its defaults (GDT's released protocol where the MMV paper's values are not at hand),
  one labelled video clip per record. The model and the data come from the pretrained run and
  the benchmark (`mmv.finetune_protocol.run_config`). `arg` 'runlocal': the synthetic
  benchmark's clips and a few short epochs, for a CPU."""
  c = paper()
  c.method = 'finetune'
  c.data.modalities = ('video',)
  c.train.log_every = 50
  c.train.checkpoint_every = 1000
  c.train.max_to_keep = 2
  if arg == 'runlocal':
    f = c.finetune
    f.fps, f.max_seconds, f.clip_offsets = 10.0, 0.0, 'mmv'
    f.num_frames, f.frame_stride, f.min_resize, f.crop_size = 8, 2, 0, 32
    # The synthetic classes are shape x direction: a left-right flip turns `left` into
    # `right`.
    f.train_flip, f.train_scale_jitter = False, (0.9, 1.1)
    f.epochs, f.warmup_epochs, f.decay_epochs = 6.0, 1.0, (4.0, 5.5)
    f.batch_size, f.clips_per_video = 32, 1
    # A few hundred steps, not GDT's ~36K: rates for that (the tiny backbone of a short
    # pretraining moves little at 2.5e-4).
    f.base_learning_rate, f.classifier_learning_rate = 0.01, 0.1
    c.train.log_every, c.train.checkpoint_every = 20, 100
    c.eval.batch_size = 64
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use 'runlocal' or nothing")
  return c
