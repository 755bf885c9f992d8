"""Accuracy evaluation (ISO/IEC 19795-1 terms) and threshold calibration."""
