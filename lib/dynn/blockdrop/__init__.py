"""BlockDrop (Wu et al., CVPR 2018): a policy network decides, once per image, which residual
blocks of a pretrained ResNet to run.

A *kept* block computes ``relu(shortcut(x) + f(x))``, a *dropped* block ``shortcut(x)``; the
policy network (a small ResNet) outputs one keep-probability per block, trained with
self-critical REINFORCE: reward ``1 − (|u|₀/K)²`` when the prediction is right, ``−γ`` when
it is wrong, first in a curriculum with the main network frozen, then jointly with it.

Where things live:

- :mod:`dynn.blockdrop.parameters`: the notebook's parameter rules and the allowed depths (light);
- :mod:`dynn.blockdrop.model`: the main network on :func:`dynn.models.residual_view` with its
  masked / real-skip / single-policy paths, the policy network, :class:`~dynn.blockdrop.model.BlockDrop`;
- :mod:`dynn.blockdrop.train`: reward, REINFORCE step, curriculum, and the stages
  ``pretrain`` → ``curriculum`` → ``finetune`` (plain keyword arguments; ``finetune`` is the
  main training stage, runnable on several processes);
- :mod:`dynn.blockdrop.evaluate`: MACs per block, greedy evaluation, threshold sweep, static
  "same blocks for everyone" baselines, latency table;
- :mod:`dynn.blockdrop.claims`: the paper's claims, decided from intervals on this run;
- :mod:`dynn.blockdrop.published`: the paper's published figures the claims cite;
- :mod:`dynn.blockdrop.plots`: figures and the ipywidgets explorer.

Importing this package loads no torch: submodules load on first use (``bd.train``, ...).
"""

from dynn.lazy import lazy_dir, lazy_submodules

_SUBMODULES = ["claims", "evaluate", "model", "parameters", "plots", "published", "train"]
__getattr__ = lazy_submodules(__name__, _SUBMODULES)
__dir__ = lazy_dir(__name__, _SUBMODULES)
