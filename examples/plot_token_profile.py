"""
Token-level entropies of a transformer
======================================

``token_profile`` computes, for every block of a language model, the
prompt entropy of each prompt's tokens and the dataset entropy across
prompts (Skean et al., "Layer by Layer", ICML 2025), plus DiME, LiDAR and
InfoNCE between augmented views. A small GPT-2 and a word tokenizer are
built on the spot, so this runs offline.
"""
import matplotlib.pyplot as plt
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

from pyfastent import plot
from pyfastent.nn import token_profile
from pyfastent.nn.prompts import augmentations

animals, places = ["cat", "dog", "bird", "fish"], ["on the mat", "in the yard", "by the sea", "at home"]
texts = [f"the {a} sleeps {p}" for a in animals for p in places]
words = ["[PAD]", "[UNK]"] + sorted({w for t in texts for w in t.split()} | set("abcdefghijklmnopqrstuvwxyz"))
core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
core.pre_tokenizer = pre_tokenizers.Whitespace()
tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", padding_side="left")
torch.manual_seed(0)
model = GPT2Model(GPT2Config(vocab_size=len(words), n_layer=4, n_embd=64, n_head=4, n_positions=64,
                             bos_token_id=0, eos_token_id=0))
profile = token_profile(model, texts, tok, views=augmentations(2), normalizations=("raw", "maxEntropy"),
                        progress=False)

# %%
# One curve per measure along the layers (``plot.token_curves`` writes the file).
path = plot.token_curves(profile, "token_curves.png")
fig, ax = plt.subplots(figsize=(10, 6))
ax.imshow(plt.imread(path))
ax.set_axis_off()
