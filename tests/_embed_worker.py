"""Run by ``accelerate launch`` in tests/test_embed.py: attention-weighted embeddings of GSM8K rows, rank 0 saves them.

accelerate launch --cpu --num_processes 2 tests/_embed_worker.py rows.jsonl out.npy
"""

import json
import sys

import numpy as np
from datasets import Dataset

from embedsdg_hf import add_embeddings
from embedsdg_hf.space import embed
from embedsdg_hf.space.embed import _rank_and_world

embed.ATTENTION_BATCH_TOKENS = 600  # several small batches, so that both ranks get some

rows = [json.loads(line) for line in open(sys.argv[1])]
out = add_embeddings(Dataset.from_list(rows), model="smollm2-135m-instruct", weights="attention", batch_size=len(rows))
rank, world = _rank_and_world()
if rank == 0:
    np.save(sys.argv[2], np.asarray(out["embedding"], dtype=np.float32))
    print(f"world={world}")
