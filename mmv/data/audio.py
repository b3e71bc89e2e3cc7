"""Audio ops for tf.data: windows aligned with the frames in time, resampling, log-mel."""

import functools
import math

import tensorflow as tf

# Half-width, in input samples, of the windowed-sinc resampling kernel.
_RESAMPLE_HALF_WIDTH = 16


def windows(waveform, starts_s, *, rate_in, rate_out, num_samples):
  """[clips, num_samples] at `rate_out` from `starts_s` [clips] seconds on; zeros past the ends.

  The waveform is at `rate_in` (a tensor: the record's rate); when it differs from `rate_out`
  the windows are resampled (band-limited: a Hann-windowed sinc, cut off at the lower
  Nyquist rate).
  """
  waveform = tf.reshape(waveform, [-1])
  rate_in = tf.cast(rate_in, tf.float32)
  windows_ = tf.cond(
      tf.equal(rate_in, rate_out),
      lambda: _slice(waveform, tf.round(starts_s * rate_in), num_samples),
      lambda: _resample(waveform, starts_s, rate_in, rate_out, num_samples))
  return tf.ensure_shape(windows_, [starts_s.shape[0], num_samples])


def _gather_padded(waveform, indices):
  """waveform[indices], 0 where the index is outside the waveform."""
  length = tf.shape(waveform, out_type=tf.int64)[0]
  inside = (indices >= 0) & (indices < length)
  # Outside indices read an appended zero (also what an empty waveform reads).
  return tf.gather(tf.concat([waveform, [0.0]], 0), tf.where(inside, indices, length))


def _slice(waveform, starts, num_samples):

  def one(start):
    window = waveform[tf.cast(start, tf.int32):][:num_samples]
    missing = num_samples - tf.shape(window)[0]
    return tf.cond(missing > 0, lambda: tf.pad(window, [[0, missing]]), lambda: window)

  # One slice per clip (their number is static): copying a window, not gathering it.
  return tf.stack([one(start) for start in tf.unstack(starts, num=starts.shape[0])])


def _resample(waveform, starts_s, rate_in, rate_out, num_samples):
  # Output sample j of clip c sits at input position p = start·rate_in + j·rate_in/rate_out.
  position = (starts_s[:, None] * rate_in +
              tf.range(num_samples, dtype=tf.float32)[None] * (rate_in / rate_out))
  base = tf.floor(position)
  taps = tf.range(-_RESAMPLE_HALF_WIDTH + 1, _RESAMPLE_HALF_WIDTH + 1, dtype=tf.float32)
  distance = (position - base)[..., None] - taps  # [clips, samples, taps]
  x = math.pi * tf.minimum(1.0, rate_out / rate_in) * distance
  sinc = tf.where(tf.abs(x) < 1e-6, tf.ones_like(x), tf.sin(x) / tf.where(x == 0, 1.0, x))
  hann = 0.5 + 0.5 * tf.cos(math.pi * distance / _RESAMPLE_HALF_WIDTH)
  weights = sinc * hann
  weights /= tf.reduce_sum(weights, axis=-1, keepdims=True)  # Unit gain at 0 Hz.
  values = _gather_padded(waveform, tf.cast(base[..., None] + taps, tf.int64))
  return tf.reduce_sum(values * weights, axis=-1)


def log_mel_spectrogram(waveform, *, sample_rate, window, hop, num_mel_bins, lower_hz, upper_hz,
                        log_offset):
  """[..., samples] → float32 [..., frames, num_mel_bins, 1] with the MMV settings.

  Magnitude STFT with a Hann window, mel filterbank, then `log(1 + 10000·mel)` ('mmv') or
  `log(mel + 1e-6)` ('dmvr').
  """
  stft = tf.signal.stft(waveform, frame_length=window, frame_step=hop, fft_length=window,
                        window_fn=tf.signal.hann_window, pad_end=False)
  # Bins above upper_hz have zero weight: leaving them out of the product cuts most of its cost.
  bins = min(window // 2 + 1, int(math.ceil(upper_hz * window / sample_rate)) + 2)
  mel_matrix = _mel_matrix(num_mel_bins, window // 2 + 1, float(sample_rate), lower_hz,
                           upper_hz)[:bins]
  mel = tf.tensordot(tf.abs(stft[..., :bins]), mel_matrix, 1)
  if log_offset == 'mmv':
    logmel = tf.math.log(1.0 + 10000.0 * mel)
  elif log_offset == 'dmvr':
    logmel = tf.math.log(mel + 1e-6)
  else:
    raise ValueError(f"log_offset must be 'mmv' or 'dmvr', got {log_offset!r}")
  return logmel[..., None]


@functools.lru_cache(maxsize=None)
def _mel_matrix(num_mel_bins, num_bins, sample_rate, lower_hz, upper_hz):
  """The mel filterbank as a numpy constant, not ops that recompute it for every example."""
  with tf.init_scope():  # Eager, even while tf.data traces the example function.
    return tf.signal.linear_to_mel_weight_matrix(num_mel_bins, num_bins, sample_rate, lower_hz,
                                                 upper_hz).numpy()


def num_spectrogram_frames(num_samples, window, hop):
  return 1 + (num_samples - window) // hop
