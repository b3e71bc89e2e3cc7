"""The MMV paper's published figures (Alayrac et al. 2020, arXiv 2006.16228): the one place
mmv keeps them. `mmv.evaluators.report` shows them beside an evaluation of the published
protocol, `python -m mmv.table` prints the whole table with our runs beside it.

Action classification (the paper's comparison with the state of the art, as a lecture on
MIL-NCE and MMV transcribes it): top-1 in percent of a linear classifier on frozen features
(Linear) and of end-to-end fine-tuning (FT) on UCF101 and HMDB51, a linear classifier on frozen
audio features for ESC-50, an MLP on frozen audio features for AudioSet (mAP), a linear
classifier on Kinetics-600. The paper's UCF101/HMDB51 Linear figures of MMV are those DeepMind's
released UCF101 script reproduces (split 1); ESC-50 is the mean over its 5 folds. Training data:
HT HowTo100M, AS AudioSet, SNet SoundNet, IG65M, YT8M YouTube-8M, K600 Kinetics-600; `years`
the years of video in it; modalities V video, A audio, T text, F optical flow.
Zero-shot text-to-video retrieval of MMV FAC TSM-50x2: MSRVTT (1k-A test split) R@1/5/10 and
median rank, YouCook2 (validation) R@10 and median rank.

A cell the paper leaves empty is absent from `figures`; MIL-NCE, trained without audio, has
no audio column and no K600 figure: `NOT_APPLICABLE` ('/' in the paper).
"""

import dataclasses

# Columns: (benchmark, metric) → the paper's heading. Benchmarks are mmv.evaluate's names
# ('kinetics600': the kinetics benchmark on its 600 classes); metrics are its record's.
COLUMNS = {
    ('ucf101', 'linear_top1'): 'UCF101 Linear',
    ('ucf101', 'finetune_top1'): 'UCF101 FT',
    ('hmdb51', 'linear_top1'): 'HMDB51 Linear',
    ('hmdb51', 'finetune_top1'): 'HMDB51 FT',
    ('esc50', 'linear_top1'): 'ESC-50 Linear',
    ('audioset', 'mlp_mAP'): 'AS MLP',
    ('kinetics600', 'linear_top1'): 'K600 Linear',
    ('msrvtt', 't2v_R@1'): 'MSRVTT R@1',
    ('msrvtt', 't2v_R@5'): 'MSRVTT R@5',
    ('msrvtt', 't2v_R@10'): 'MSRVTT R@10',
    ('msrvtt', 't2v_MedR'): 'MSRVTT MedR',
    ('youcook2', 't2v_R@10'): 'YouCook2 R@10',
    ('youcook2', 't2v_MedR'): 'YouCook2 MedR',
}
NOT_APPLICABLE = '/'


@dataclasses.dataclass(frozen=True)
class Row:
  method: str
  backbone: str  # As the paper prints it, with its parameter count.
  data: str
  years: float
  modalities: str
  figures: dict  # {(benchmark, metric): figure as printed}
  backbone_name: str = ''  # mmv's name of the backbone (configs), where mmv has it.
  not_applicable: tuple = ()  # (benchmark, metric) columns printed '/'.

  def figure(self, column):
    """The paper's figure in `column`, NOT_APPLICABLE, or None (not reported)."""
    if column in self.not_applicable:
      return NOT_APPLICABLE
    return self.figures.get(column)


def _classification(ucf, hmdb, esc=None, audioset=None, k600=None):
  """{column: figure} of (UCF101 Linear, FT), (HMDB51 Linear, FT), ESC-50, AS, K600; None
  (or a None in a pair) is a cell the paper leaves empty."""
  values = {('ucf101', 'linear_top1'): ucf[0], ('ucf101', 'finetune_top1'): ucf[1],
            ('hmdb51', 'linear_top1'): hmdb[0], ('hmdb51', 'finetune_top1'): hmdb[1],
            ('esc50', 'linear_top1'): esc, ('audioset', 'mlp_mAP'): audioset,
            ('kinetics600', 'linear_top1'): k600}
  return {k: v for k, v in values.items() if v is not None}


_NO_AUDIO = (('esc50', 'linear_top1'), ('audioset', 'mlp_mAP'), ('kinetics600', 'linear_top1'))
_NONE = (None, None)
_MMV_RETRIEVAL = {('msrvtt', 't2v_R@1'): 9.3, ('msrvtt', 't2v_R@5'): 23.0,
                  ('msrvtt', 't2v_R@10'): 31.1, ('msrvtt', 't2v_MedR'): 38,
                  ('youcook2', 't2v_R@10'): 45.4, ('youcook2', 't2v_MedR'): 13}

ROWS = (
    Row('MIL-NCE', 'I3D (12.1M)', 'HT', 15, 'VT',
        _classification((83.4, 89.1), (54.8, 59.2)), not_applicable=_NO_AUDIO),
    Row('MIL-NCE', 'S3D-G (9.1M)', 'HT', 15, 'VT',
        _classification((82.7, 91.3), (53.1, 61.0)), 's3d_g', not_applicable=_NO_AUDIO),
    Row('AVTS', 'MC3 (11.7M)', 'AS', 1, 'VA', _classification((None, 89.0), (None, 61.6), 80.6)),
    Row('AVTS', 'MC3 (11.7M)', 'SNet', 1, 'VA', _classification(_NONE, _NONE, 82.3)),
    Row('AA+AV CC', 'RN-50 (23.5M)', 'AS', 1, 'VA',
        _classification(_NONE, _NONE, audioset=28.5)),
    Row('CVRL', 'R3D50 (33.3M)', 'K600', 0.1, 'V', _classification(_NONE, _NONE, k600=64.1)),
    Row('XDC', 'R(2+1)D-18 (33.3M)', 'AS', 1, 'VA',
        _classification((None, 91.2), (None, 61.0), 84.8), 'r2plus1d_18'),
    Row('XDC', 'R(2+1)D-18 (33.3M)', 'IG65M', 21, 'VA',
        _classification((None, 94.2), (None, 67.4)), 'r2plus1d_18'),
    Row('ELo', 'R(2+1)D-50 (46.9M)', 'YT8M', 13, 'VFA',
        _classification((None, 93.8), (64.5, 67.4))),
    Row('AVID', 'R(2+1)D-50 (46.9M)', 'AS', 1, 'VA',
        _classification((None, 91.5), (None, 64.7), 89.2)),
    Row('GDT', 'R(2+1)D-18 (33.3M)', 'AS', 1, 'VA',
        _classification((None, 92.5), (None, 66.1), 88.5), 'r2plus1d_18'),
    Row('GDT', 'R(2+1)D-18 (33.3M)', 'IG65M', 21, 'VA',
        _classification((None, 95.2), (None, 72.8)), 'r2plus1d_18'),
    Row('MMV VA only', 'R(2+1)D-18 (33.3M)', 'AS', 1, 'VA',
        _classification((83.9, 91.5), (60.0, 70.1), 85.6, 29.7, 55.5), 'r2plus1d_18'),
    Row('MMV VA only', 'S3D-G (9.1M)', 'AS', 1, 'VA',
        _classification((84.7, 90.1), (60.4, 68.2), 86.1, 29.7, 59.8), 's3d_g'),
    Row('MMV VA only', 'S3D-G (9.1M)', 'AS+HT', 16, 'VA',
        _classification((86.2, 91.1), (61.5, 68.3), 87.2, 30.6, 59.8), 's3d_g'),
    Row('MMV FAC', 'S3D-G (9.1M)', 'AS+HT', 16, 'VAT',
        _classification((89.6, 92.5), (62.6, 69.6), 87.7, 30.3, 68.0), 's3d_g'),
    Row('MMV FAC', 'TSM-50 (23.5M)', 'AS+HT', 16, 'VAT',
        _classification((91.5, 94.9), (66.7, 73.2), 86.4, 30.6, 67.8), 'tsm_resnet50'),
    Row('MMV FAC', 'TSM-50x2 (93.9M)', 'AS+HT', 16, 'VAT',
        {**_classification((91.8, 95.2), (67.1, 75.0), 88.9, 30.9, 70.5), **_MMV_RETRIEVAL},
        'tsm_resnet50x2'),
)
# The table's last row, whose cells the transcription at hand does not place: six figures for
# seven columns. Printed as a note, not as a row.
SUPERVISED_NOTE = ('Supervised (the paper\'s last row, refs. of several papers): 96.8, 71.5, '
                   '75.9, 86.5 (†), 43.9, 81.8, in the order printed; the source at hand does not '
                   'say which of the seven classification columns each belongs to.')

# Classes (top-1 chance = 100 / classes) and retrieval candidates (R@k chance = 100·k / N,
# median rank (N + 1) / 2) of the paper's benchmarks; our records carry their own counts.
CLASSES = {'ucf101': 101, 'hmdb51': 51, 'esc50': 50, 'kinetics600': 600, 'audioset': 527}
CANDIDATES = {'msrvtt': 1000}  # 1k-A: 1,000 test videos, each with its caption.


def mmv_fac_numbers():
  """{(backbone name, benchmark, metric): figure} of the MMV FAC rows: what an evaluation
  report shows beside our number when it used the published protocol."""
  return {(row.backbone_name, benchmark, metric): value
          for row in ROWS if row.method == 'MMV FAC'
          for (benchmark, metric), value in row.figures.items()}
