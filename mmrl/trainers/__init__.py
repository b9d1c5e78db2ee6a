"""The methods a run can train or evaluate: one module each (docs/architecture.md#methods)."""
from mmrl.trainers.base import BuildContext, EpochHook, EvalCheckpoint, Method
from mmrl.trainers.registry import get, methods, names, register

__all__ = ["BuildContext", "EpochHook", "EvalCheckpoint", "Method", "get", "methods", "names", "register"]
