"""The paper's analyses: its comparisons as experiments (Tables 2, 3, 4 and 11, §4.3.2), their
figures (Fig. 8, 10), and the diagnostics of stage 2 (what MPVS-Net adds over VGG-SERD)."""
