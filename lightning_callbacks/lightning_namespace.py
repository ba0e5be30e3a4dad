"""Which Lightning a callback talks to: ``lightning.pytorch`` (Lightning 2's unified package) or ``pytorch_lightning``.

``pip install lightning`` installs both packages. They are copies of one code base whose classes are distinct:
a ``pytorch_lightning.Callback`` is not a ``lightning.pytorch.Callback``, and ``pytorch_lightning``'s helpers
reject a ``lightning.pytorch`` module (``ValueError: Expected a parent`` from ``is_overridden``). A Trainer of
either namespace calls the hooks of whatever it is given, so a mismatch fails late and obscurely. This module is
the one place that knows about both; every callback of this package builds on it:

- :class:`LightningCallback` subclasses the ``Callback`` of every installed namespace, so a Trainer of either
  accepts it, both installed at once included;
- in ``setup`` the callback calls :meth:`LightningCallback.bind`, which finds the Trainer's namespace, checks the
  callback was built for it (a clear ``TypeError`` otherwise) and returns a :class:`LightningNamespace` whose
  helpers (``rank_zero_warn``, ``is_overridden``, logger classes) are that namespace's own.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any, Optional, Tuple

#: The namespaces supported, in order of preference (the first installed is the default).
NAMESPACES = ("lightning.pytorch", "pytorch_lightning")
_INSTALL = {"lightning.pytorch": "pip install lightning", "pytorch_lightning": "pip install pytorch-lightning"}


@dataclass(frozen=True)
class LightningNamespace:
    """One installed Lightning namespace and the classes and helpers a callback needs from it.

    Attributes:
        name: ``"lightning.pytorch"`` or ``"pytorch_lightning"``.
        module: the imported top-level module of that namespace.
    """

    name: str
    module: ModuleType

    def __reduce__(self):  # pickled by name (ddp_spawn pickles callbacks; modules do not pickle)
        return load_namespace, (self.name,)

    @property
    def Callback(self) -> type:  # noqa: N802 - mirrors the Lightning class name
        return self.module.Callback

    @property
    def LightningModule(self) -> type:  # noqa: N802
        return self.module.LightningModule

    @property
    def Trainer(self) -> type:  # noqa: N802
        return self.module.Trainer

    @property
    def TensorBoardLogger(self) -> type:  # noqa: N802
        return importlib.import_module(f"{self.name}.loggers").TensorBoardLogger

    def rank_zero_warn(self, message: str) -> None:
        """Warn once, from rank zero only, with this namespace's rank bookkeeping."""
        importlib.import_module(f"{self.name}.utilities").rank_zero_warn(message)

    def is_overridden(self, method_name: str, pl_module: Any) -> bool:
        """Whether ``pl_module`` (a LightningModule of this namespace) overrides ``method_name``."""
        helpers = importlib.import_module(f"{self.name}.utilities.model_helpers")
        return helpers.is_overridden(method_name, pl_module, parent=self.LightningModule)


@lru_cache(maxsize=None)
def load_namespace(name: str) -> LightningNamespace:
    """The namespace called ``name``; ImportError with the install command when it is missing.

    Args:
        name: one of :data:`NAMESPACES`.

    Returns:
        The :class:`LightningNamespace`.
    """
    if name not in NAMESPACES:
        raise ValueError(f"unknown Lightning namespace {name!r}; use one of {NAMESPACES}")
    try:
        return LightningNamespace(name, importlib.import_module(name))
    except ImportError as error:
        raise ImportError(f"{name} is not installed: {_INSTALL[name]}") from error


@lru_cache(maxsize=1)
def installed_namespaces() -> Tuple[LightningNamespace, ...]:
    """Every importable namespace, in :data:`NAMESPACES` order."""
    found = []
    for name in NAMESPACES:
        try:
            found.append(load_namespace(name))
        except ImportError:
            continue
    return tuple(found)


def default_namespace() -> LightningNamespace:
    """``lightning.pytorch`` when installed (what Lightning's docs teach), else ``pytorch_lightning``."""
    found = installed_namespaces()
    if not found:
        raise ImportError("the Lightning callbacks need Lightning: pip install 'captum-qubo[lightning]'")
    return found[0]


def namespace_of(obj: Any) -> Optional[LightningNamespace]:
    """The namespace whose Trainer, LightningModule or Callback ``obj`` is an instance of (None: no namespace)."""
    for namespace in installed_namespaces():
        if isinstance(obj, (namespace.Trainer, namespace.LightningModule, namespace.Callback)):
            return namespace
    return None


def _callback_bases() -> Tuple[type, ...]:
    bases = tuple(namespace.Callback for namespace in installed_namespaces())
    if not bases:
        default_namespace()  # raises the install hint
    return bases


class LightningCallback(*_callback_bases()):
    """Base of this package's callbacks: accepted by the Trainer of every installed Lightning namespace.

    A subclass calls :meth:`bind` first thing in ``setup`` and uses the namespace it returns (also kept in
    :attr:`lightning`) for Lightning's helpers, never a fixed ``import pytorch_lightning``.

    Args:
        lightning (str, optional): pin the callback to one namespace (``"lightning.pytorch"`` or
                    ``"pytorch_lightning"``); a Trainer of the other then fails at ``setup`` with a ``TypeError``.
                    None (default) follows whichever Trainer runs the callback.
    """

    def __init__(self, lightning: Optional[str] = None) -> None:
        super().__init__()
        if lightning is not None:
            load_namespace(lightning)  # unknown or missing namespaces fail here, not at setup
        self.lightning_pin = lightning
        self.lightning: Optional[LightningNamespace] = None

    @property
    def built_for(self) -> Tuple[str, ...]:
        """The namespaces whose Trainer may run this callback."""
        names = tuple(n.name for n in installed_namespaces() if isinstance(self, n.Callback))
        return tuple(n for n in names if n == self.lightning_pin) if self.lightning_pin else names

    def bind(self, trainer: Any) -> LightningNamespace:
        """Check ``trainer`` belongs to a namespace this callback was built for; return that namespace.

        Raises:
            TypeError: ``trainer`` is not a Lightning Trainer, or one of a namespace the callback was not built for.
        """
        name = type(self).__name__
        namespace = namespace_of(trainer) if not isinstance(trainer, type) else None
        if namespace is None or not isinstance(trainer, namespace.Trainer):
            raise TypeError(
                f"{name} needs a Lightning Trainer (lightning.pytorch.Trainer or pytorch_lightning.Trainer), "
                f"got {type(trainer).__module__}.{type(trainer).__qualname__}"
            )
        if namespace.name not in self.built_for:
            built = " or ".join(self.built_for) or "no installed namespace"
            fix = (f"construct it with lightning={namespace.name!r} (or without lightning=)" if self.lightning_pin
                   else "subclass lightning_callbacks.lightning_namespace.LightningCallback")
            raise TypeError(
                f"{name} was built for {built} but runs in a {namespace.name}.Trainer; the two packages' classes "
                f"do not mix. Use a {built}.Trainer, or {fix}"
            )
        self.lightning = namespace
        return namespace
