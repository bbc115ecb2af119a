"""Triton Python-backend model `tokenizer`: TEXT → input_ids, attention_mask, token_offsets.

The first step of the `router_text` ensemble, so clients without a tokenizer (perf_analyzer,
curl, other languages) can send text. It encodes one text as the gateway encodes one chunk:
[CLS] + the first max_seq_len - 2 word pieces + [SEP]. Longer texts are cut there (the
gateway instead reads them in consecutive chunks). Rows of one request are right-padded with
0 to the longest; token_offsets are [start, end) character offsets, (0, 0) for special tokens
and padding. Committed source; `semroute export` writes tokenizer.json beside it, and the
tensor names and window into config.pbtxt (export/text_models.py): the stub cannot import
modelspec.
"""
import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.text_input = config["input"][0]["name"]
        # The router's inputs, then the tokens' character offsets, as the config lists them.
        self.ids_output, self.mask_output, self.offsets_output = (tensor["name"] for tensor in config["output"])
        self.tokenizer = Tokenizer.from_file(str(Path(__file__).parent / "tokenizer.json"))
        self.tokenizer.enable_truncation(int(params["max_seq_len"]))
        self.tokenizer.no_padding()  # the shipped tokenizer.json pads every text to 128

    def execute(self, requests):
        return [self._tokenize(request) for request in requests]

    def _tokenize(self, request):
        rows = pb_utils.get_input_tensor_by_name(request, self.text_input).as_numpy().reshape(-1)
        try:
            texts = [row.decode("utf-8") if isinstance(row, bytes) else str(row) for row in rows]
        except UnicodeDecodeError as exc:
            return _error(f"{self.text_input} must be UTF-8 text: {exc}")
        encodings = self.tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        offsets = np.zeros((len(encodings), width, 2), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            length = len(encoding.ids)
            ids[row, :length] = encoding.ids
            mask[row, :length] = encoding.attention_mask
            offsets[row, :length] = encoding.offsets
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor(self.ids_output, ids), pb_utils.Tensor(self.mask_output, mask),
            pb_utils.Tensor(self.offsets_output, offsets)])


def _error(message):
    return pb_utils.InferenceResponse(output_tensors=[],
                                      error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))
