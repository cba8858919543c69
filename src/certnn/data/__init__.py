"""Data loading (npz files, bundled demo data, text tasks)."""
from .npz import load_npz
from .text import (TEXT_TASKS, EncodedText, TextSplit, TextTask, Tokenizer, Vocabulary, encode_texts, glove_matrix,
                   load_glove, load_mr, load_sst2, load_text_task, load_toxic, load_urls, pad_ids, split_indices,
                   word_frames)

__all__ = ["load_npz", "TEXT_TASKS", "EncodedText", "TextSplit", "TextTask", "Tokenizer", "Vocabulary", "encode_texts",
           "glove_matrix", "load_glove", "load_mr", "load_sst2", "load_text_task", "load_toxic", "load_urls",
           "pad_ids", "split_indices", "word_frames"]
