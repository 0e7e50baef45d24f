"""The PyTorch side of the whole-model parity tests: masked training as the
reference code does it (optimizer.step(), then the masks re-applied), with
the first step's logits and masked gradients, every step's loss and the
final parameters returned for comparison with the C side."""
import copy

import numpy as np
import torch


def masked_training(model, masks, images, labels, make_optimizer, loss_fn, dtype):
    """Trains a copy of `model` in `dtype` on images[step], labels[step];
    make_optimizer(named parameters) builds the optimiser, loss_fn(logits,
    labels) the loss. Returns (losses, logits0, grads0, final)."""
    model = copy.deepcopy(model).to(dtype)
    model.train()
    params = dict(model.named_parameters())
    opt = make_optimizer(params)
    losses, logits0, grads0 = [], None, None
    for step in range(images.shape[0]):
        opt.zero_grad()
        logits = model(images[step].to(dtype))
        loss = loss_fn(logits, labels[step])
        loss.backward()
        losses.append(loss.item())
        if step == 0:
            logits0 = logits.detach().double().numpy().copy()
            grads0 = {n: (p.grad * masks[n].to(dtype) if n in masks else p.grad).double().numpy().copy()
                      for n, p in params.items()}
        opt.step()
        with torch.no_grad():  # the reference's mask.step(): optimizer.step() then apply_mask()
            for n, m in masks.items():
                params[n].mul_(m.to(dtype))
    final = {n: p.detach().double().numpy().copy() for n, p in params.items()}
    return np.array(losses), logits0, grads0, final
