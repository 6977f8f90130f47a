"""mmengine glue: importing this package registers models, datasets, hooks and the optimizer
constructor, and allow-lists mmengine's checkpoint classes for ``weights_only`` loading."""
from . import amp, classification, datasets, fsdp, guards, hooks, model, optim, serialization  # noqa: F401  (registration)
from .amp import set_amp
from .launch import apply_cfg_options, build_runner, check_schedule, init_distributed, scale_lr, set_epochs, shutdown_distributed
from .classification import MAEClassifier, TopKAccuracy
from .model import MAEPretrainer

__all__ = ["MAEClassifier", "MAEPretrainer", "TopKAccuracy", "apply_cfg_options", "build_runner", "check_schedule", "init_distributed", "scale_lr", "set_amp",
           "set_epochs", "shutdown_distributed"]
