"""Tiny MMV on the synthetic dataset: trains on a laptop-class CPU in a few minutes.

Launch (what `make demo` runs):

    python -m mmv.data.synthetic --output_dir data/synthetic --if_absent
    python launch.py --config configs/tiny.py --workdir runs/demo
    python -m mmv.evaluate --config configs/tiny.py --workdir runs/demo \
        --output runs/demo/eval.json

Overrides are checked against the fields below: `--config.train.steps=50` works,
`--config.trian.steps=50` is an error.
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.data_dir = 'data/synthetic'
  c.data.train_split = 'train'
  c.data.test_split = 'test'
  # Training mixture: ((data_dir, split, weight), ...), each batch split by weight between
  # them; empty reads data_dir/train_split alone.
  c.data.mixture = ()
  c.data.vocab = 'vocab.txt'  # Relative to data_dir unless absolute.
  c.data.modalities = ('video', 'audio', 'text')
  c.data.num_frames = 8
  c.data.frame_stride = 2
  c.data.num_test_clips = 1  # Evaluation: 1 = the middle clip; N = N evenly spaced clips.
  c.data.crop_size = 32
  c.data.fps = 10.0  # Frame rate the clip length (and the audio window) is planned for.
  c.data.min_resize = 0  # Resize the short side to this before cropping; 0 keeps the size.
  # Flipping and colour jitter would change what the synthetic captions describe (left/right,
  # colour names), so the tiny config leaves them off; the paper configs turn them on.
  c.data.random_flip = False
  c.data.color_augment = False
  c.data.scale_jitter = (0.9, 1.1)
  c.data.normalization = 'unit'  # 'unit': [0, 1]; 'centered': [-1, 1]; 'imagenet': mean/std.
  c.data.audio_format = 'log_mel'  # Or 'waveform'.
  c.data.audio_sample_rate = 4000.0
  c.data.stft_window = 256
  c.data.stft_hop = 128
  c.data.num_mel_bins = 32
  c.data.mel_lower_hz = 80.0
  c.data.mel_upper_hz = 1900.0
  c.data.log_offset = 'mmv'  # 'mmv': log(1 + 10000 mel); 'dmvr': log(mel + 1e-6).
  c.data.max_words = 8
  c.data.num_captions = 2  # K candidate captions per clip for MIL-NCE.
  c.data.stop_words = ('a', 'the', 'is', 'and', 'with', 'then')
  c.data.label_format = 'index'  # Or 'one_hot' / 'multi_hot' (with num_classes).
  c.data.num_classes = 0
  c.data.with_names = False  # Adds `filename` and `label_name` (evaluation only: strings).
  c.data.strict = False  # True: a bad record is an error naming its file, not a skip.
  c.data.shuffle_buffer = 512
  c.data.prefetch = 2

  c.model = ml_collections.ConfigDict()
  c.model.video_backbone = 'tiny_video'
  c.model.audio_backbone = 'tiny_audio'
  c.model.width = 32  # Base width of the tiny backbones.
  c.model.word_embedding_dim = 64
  c.model.text_hidden = 128
  c.model.head = 'fac_relu'  # 'shared' | 'disjoint' | 'fac_relu' | 'fac_bnrelu'.
  c.model.va_dim = 128  # S_va; 512 in the paper.
  c.model.vat_dim = 64  # S_vat; 256 in the paper.
  c.model.bn_decay = 0.9
  c.model.bn_eps = 1e-5

  c.loss = ml_collections.ConfigDict()
  c.loss.temperature = 0.07
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
  c.optim.warmup_steps = 50
  c.optim.end_learning_rate_factor = 0.0
  c.optim.weight_decay = 0.0

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 32  # Global, over all devices of all processes.
  c.train.steps = 600
  c.train.log_every = 20
  c.train.checkpoint_every = 200
  c.train.max_to_keep = 3
  # Micro-batches per step (gradient accumulation): the negatives still come from the whole
  # batch (GradCache, see train.cached_loss_and_grads); 1 = one pass.
  c.train.microbatches = 1
  c.train.nonfinite = 'stop'  # A NaN/inf loss: 'stop' (keeping the last checkpoint) | 'skip'.

  c.profile_steps = ()  # (first, last): a profiler trace of these steps in workdir/profile.

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 64
  c.eval.linear_c = (0.01, 0.1, 1.0, 10.0)  # C grid for the linear SVM, chosen by 3-fold CV.
  return c
