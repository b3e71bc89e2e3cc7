"""Channel counts of width-scaled backbones (tests run the paper's networks at a fraction)."""


def scaled(channels, multiplier):
  """`channels · multiplier`, rounded, at least 1."""
  return max(1, int(round(channels * multiplier)))
