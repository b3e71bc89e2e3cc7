"""Audio ops for tf.data: the waveform window aligned with the frames, log-mel spectrogram."""

import tensorflow as tf


def aligned_window(waveform, start_s, num_samples):
  """`num_samples` samples from `start_s` seconds on, zero-padded past the end."""
  waveform = tf.reshape(waveform, [-1])
  length = tf.shape(waveform)[0]
  start = tf.minimum(tf.cast(tf.round(start_s), tf.int32), tf.maximum(length - 1, 0))
  window = waveform[start:start + num_samples]
  return tf.pad(window, [[0, num_samples - tf.shape(window)[0]]])


def log_mel_spectrogram(waveform, *, sample_rate, window, hop, num_mel_bins, lower_hz, upper_hz,
                        log_offset):
  """[samples] → float32 [frames, num_mel_bins, 1] with the MMV settings (DESIGN.md §4).

  Magnitude STFT with a Hann window, mel filterbank, then `log(1 + 10000·mel)` ('mmv') or
  `log(mel + 1e-6)` ('dmvr').
  """
  stft = tf.signal.stft(waveform, frame_length=window, frame_step=hop, fft_length=window,
                        window_fn=tf.signal.hann_window, pad_end=False)
  magnitude = tf.abs(stft)
  mel_matrix = tf.signal.linear_to_mel_weight_matrix(
      num_mel_bins, window // 2 + 1, sample_rate, lower_hz, upper_hz)
  mel = tf.tensordot(magnitude, mel_matrix, 1)
  if log_offset == 'mmv':
    logmel = tf.math.log(1.0 + 10000.0 * mel)
  elif log_offset == 'dmvr':
    logmel = tf.math.log(mel + 1e-6)
  else:
    raise ValueError(f"log_offset must be 'mmv' or 'dmvr', got {log_offset!r}")
  return logmel[..., None]


def num_spectrogram_frames(num_samples, window, hop):
  return 1 + (num_samples - window) // hop
