"""Offline training pipeline for GEM-lite (teacher, students, distillation, export, publish)."""
