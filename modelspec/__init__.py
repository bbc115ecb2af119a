"""The served model's contract, the one place it is written down: the gateway (control/) and
the export side (export/) both import it, and nothing else of each other.

- labels.py      the label lists of every signal (domains, tasks, PII types and BIO tags)
- interface.py   the model's name, its input and output tensors and their shapes, the window
- buckets.py     the padded row widths the gateway sends and the Triton model groups by
- base_model.py  where the base encoder and its tokenizer live
- calibration.py the strong_prob share → threshold table

Light on purpose (the standard library and numpy): the gateway imports it at serving time.
"""
