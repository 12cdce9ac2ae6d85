"""Training stage: patient-level split, face tensors and augmentation, the paper's training recipe."""
