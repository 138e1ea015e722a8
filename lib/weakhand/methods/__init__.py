"""The methods of the study, one module each, all with the same small interface.

* :mod:`~weakhand.methods.cai` — Cai et al. (ECCV 2018): 2D heatmaps + depth regression, the
  depth regulariser (stage 2) and its weakly supervised stage-3 variants.
* :mod:`~weakhand.methods.spurr_bmc` — the 2.5D latent-heatmap model (Iqbal et al. ECCV 2018)
  trained with biomechanical constraints on weak samples (Spurr et al. ECCV 2020).
* :mod:`~weakhand.methods.wan_dense` — dense 3D regression from depth (Wan et al. CVPR 2018),
  a baseline and the pseudo-label teacher.
* :mod:`~weakhand.methods.weak_signals` — the weak depth signals on target samples, shared by
  stage 3 and the oracle descent; :mod:`~weakhand.methods.base` — what the modules share.

Every method module exposes:

``Config``
    dataclass of the method's network (and target) configuration; ``to_dict()`` is what
    checkpoints store.
``VARIANTS``
    ``{name: base.Variant(description, signals, target)}``; adding a variant is one entry here
    (its weak signals by name, the target training set it fine-tunes on).
``losses(batch, out, ...) -> dict``
    the supervised loss terms of a model output ``out`` on a HandDataset ``batch``: a scalar
    ``"loss"`` and its detached-or-not terms, each on the samples that carry its label.
``step(model, batch, ...) -> dict``
    one training step's loss dict (forward pass + :func:`losses` + the variant's weak terms);
    what the Trainer calls as ``step_fn``.
``build(variant, ...) -> base.Stage``
    the models, optimizer, step callable, pose model (and optional scheduler and options) of
    one training stage, the same dataclass for every method.
``predict(model, loader, device) -> dict``
    numpy arrays (N, ...) of predictions and labels over a loader (the dense method also takes
    ``cfg=`` for its voting geometry).

Conventions: ``uv`` (B, 21, 2) input pixels; ``zn`` (B, 21) root-relative depth in units of the
scale bone (middle MCP→PIP); ``kp3d`` (B, 21, 3) mm, camera frame; right hands (loaders with
``mirror_left=True``).
"""
