"""Give every parameter a (zero) gradient, at the cost of a walk over the autograd graph."""

import torch

__all__ = ["anchor_unused_parameters"]


def anchor_unused_parameters(loss: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """``loss`` plus zero times one element of each parameter the loss does not depend on.

    A batch leaves some parameters out of the graph: the heads of objectives not drawn, the
    mask vector of an unmasked modality, the embedder of a modality the batch lacks, the
    pooler or MLM head a setting does not use. DistributedDataParallel then stops unless run
    with --find-unused-parameters, and Adam would skip them on one process while ranks that
    all-reduce zeros step them, so 1 process x --update-freq 2 and 2 ranks would drift apart.
    Only those parameters are anchored (one element each: a whole-tensor sum could overflow
    in fp16, and inf x 0 is NaN); the rest already have gradients, so this costs nothing
    on the step.
    """
    if loss.grad_fn is None:  # validation / no_grad
        return loss
    used, seen, stack = set(), set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad nodes hold the leaf parameter
        if variable is not None:
            used.add(id(variable))
        stack.extend(child for child, _ in node.next_functions)
    unused = [p for p in model.parameters() if p.requires_grad and id(p) not in used]
    if not unused:
        return loss
    return loss + sum(p.view(-1)[0] for p in unused) * 0.0
