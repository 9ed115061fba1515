"""The ``memobert_emotion`` options that shape the text and the read-out: class names, the prompt template
and its label words, and which head (:mod:`memobert_plugin.models.emotion_heads`) the model registers."""

from typing import List

import torch

from memobert_plugin.data.multimodal_dataset import TextFormat
from memobert_plugin.data.vocabulary import BertVocabulary
from memobert_plugin.models.emotion_heads import EmotionClassificationHead, PromptVerbalizer, label_pieces_from
from memobert_plugin.option_lists import split_list
from memobert_plugin.data.wordpiece import WordPieceTokenizer

__all__ = ["EmotionReadout", "UTTERANCE_SLOT"]

UTTERANCE_SLOT = "{utterance}"


class EmotionReadout:
    """Reads ``emotion_labels``, ``emotion_head``, ``prompt_template``, ``prompt_label_words``, ``text_max_tokens``."""

    def __init__(self, cfg, vocab: BertVocabulary):
        self.cfg, self.vocab = cfg, vocab
        # is_sentencepiece scans the whole vocabulary; encode() runs once per utterance
        self._sentencepiece: bool = vocab.is_sentencepiece
        self.class_names = split_list(cfg.emotion_labels)
        # templates may say [MASK]; an utterance's text is tokenised as at preparation, where it
        # is ordinary text ("[", "mask", "]"), so a transcript cannot inject a mask slot
        self.text_tokenizer = WordPieceTokenizer(vocab.indices)
        self.template_tokenizer = WordPieceTokenizer(vocab.indices, never_split=[vocab[vocab.mask_index]])
        #: each class's label-word pieces (the prompt head), None for the classifier
        self.label_pieces = self._label_pieces() if cfg.emotion_head == "prompt" else None

    def _template_ids(self):
        template = self.cfg.prompt_template
        if template.count(UTTERANCE_SLOT) != 1:
            raise ValueError(f"--prompt-template {template!r} needs exactly one {UTTERANCE_SLOT}")
        before, after = template.split(UTTERANCE_SLOT)
        ids = [self._ids(self.template_tokenizer, part) for part in (before, after)]
        if self.vocab.unk() in ids[0] + ids[1]:
            raise ValueError(f"--prompt-template {template!r} has words outside the vocabulary {self.vocab.source}")
        return ids

    def _ids(self, tokenizer: WordPieceTokenizer, text: str) -> List[int]:
        if self._sentencepiece:
            raise ValueError(
                f"{self.vocab.source} is a sentencepiece vocabulary: prompt templates, label words and "
                "memobert-predict's text are tokenised with WordPiece, so use a BERT vocab.txt for them"
            )
        return [self.vocab.index(p) for p in tokenizer.tokenize(text)]

    def encode(self, text: str) -> List[int]:
        """WordPiece ids of an utterance's text (no [CLS]/[SEP]), as memobert-prepare tokenises it."""
        return self._ids(self.text_tokenizer, text)

    def _label_pieces(self) -> List[List[int]]:
        prefix, suffix = self._template_ids()
        if (prefix + suffix).count(self.vocab.mask_index) != 1:
            raise ValueError(f"--prompt-template {self.cfg.prompt_template!r} needs exactly one [MASK]")
        words = split_list(self.cfg.prompt_label_words) or self.class_names
        if len(words) != len(self.class_names):
            raise ValueError(f"--prompt-label-words has {len(words)} words for {len(self.class_names)} classes")
        return label_pieces_from(self.text_tokenizer.tokenize, words, self.vocab)

    @property
    def prompt_slots(self) -> int:
        """[MASK] slots in the prompt: a label word of n pieces needs n (0 for the classifier)."""
        return max(map(len, self.label_pieces)) if self.label_pieces else 0

    def text_format(self) -> TextFormat:
        bos, eos, limit = self.vocab.bos(), self.vocab.eos(), self.cfg.text_max_tokens
        if self.label_pieces is None:
            return TextFormat(bos, eos, limit)
        prefix, suffix = self._template_ids()
        slots = [self.vocab.mask_index] * self.prompt_slots
        if self.vocab.mask_index in suffix:
            at = suffix.index(self.vocab.mask_index)
            suffix = suffix[:at] + slots + suffix[at + 1:]
        else:
            at = prefix.index(self.vocab.mask_index)
            prefix = prefix[:at] + slots + prefix[at + 1:]
        return TextFormat(bos, eos, limit, tuple(prefix), tuple(suffix))

    def build_head(self, hidden_dim: int) -> torch.nn.Module:
        """The read-out the model registers: the classifier on [CLS], or the label words at the prompt's [MASK]."""
        if self.label_pieces is None:
            return EmotionClassificationHead(hidden_dim, len(self.class_names))
        return PromptVerbalizer(self.label_pieces, self.vocab.mask_index)
