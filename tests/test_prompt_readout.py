"""The prompt is read at its [MASK] slot and nowhere else: in a miniature world where only the [MASK]
slot's state knows the class, the verbalizer gets every utterance right, and any other position
would answer with the decoy class that every other slot carries."""

import torch
from torch import nn

from memobert_plugin.models.emotion_heads import PromptVerbalizer
from memobert_plugin.models.memobert import EncoderOutput, SequenceLayout

MASK, VOCAB = 4, 12
LABEL_IDS = [8, 9, 10, 11]  # one word piece per class


class _Model(nn.Module):
    """An MLM head that reads a state as the vocabulary's logits (identity)."""

    def lm_head(self, states: torch.Tensor) -> torch.Tensor:
        return states


def test_the_prompt_is_read_at_the_mask_slot_only():
    tokens = torch.tensor([[2, 5, 6, MASK, 7, 3],
                           [2, 5, MASK, 7, 3, 0],
                           [2, MASK, 7, 3, 0, 0]])
    truth = torch.tensor([1, 3, 2])
    decoy = 0  # what every slot other than [MASK] says: the prompt's neighbours, [CLS], the utterance
    hidden = torch.zeros(len(tokens), tokens.shape[1], VOCAB)
    hidden[:, :, LABEL_IDS[decoy]] = 5.0
    at_mask = tokens.eq(MASK)
    hidden[at_mask] = 0.0
    hidden[at_mask, torch.tensor(LABEL_IDS)[truth]] = 5.0
    layout = SequenceLayout(packed_index=torch.arange(tokens.shape[1]).expand(len(tokens), -1),
                            spans={"text": (0, tokens.shape[1])})
    output = EncoderOutput(hidden, tokens.eq(0), layout)
    scores = PromptVerbalizer([[i] for i in LABEL_IDS], MASK)(output, tokens, _Model())
    assert scores.argmax(-1).tolist() == truth.tolist()
