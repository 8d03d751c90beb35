"""Model pipeline: recordings, teacher, students, distillation, quantization, C export."""
