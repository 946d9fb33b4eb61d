"""A word-level Hugging Face tokenizer over a given vocabulary, built
offline with the ``tokenizers`` library (it works alike under transformers
4 and 5; ``BertTokenizerFast(vocab_file=...)`` silently loads no
vocabulary under transformers 5)."""
import string


def word_tokenizer(words=(), padding_side="right"):
    """Words (and every lowercase letter) as tokens, with [PAD], [UNK], [CLS]
    and [SEP] specials; returns (tokenizer, vocabulary size)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                                        *string.ascii_lowercase, *words]))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]",
                                        cls_token="[CLS]", sep_token="[SEP]", padding_side=padding_side)
    return tokenizer, len(vocab)
