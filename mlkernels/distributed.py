"""Beyond one process: data-parallel training over MPI, and kernels inside Dask.

mlkernels does not ship an engine of its own; it fits into the ones people already run.

**MPI** (mpi4py, with an MPI runtime from PyPI: ``pip install "mlkernels[dist]"``). Every
rank holds the whole model and trains on its share of each batch; one in-place ``Allreduce``
of a flat gradient buffer per step makes the ranks' gradients the gradient of the whole batch
(openai/spinningup's ``mpi_tools.py`` is the same recipe)::

    from mlkernels import distributed as dist
    dist.set_threads_per_rank()             # the node's cores shared among its ranks
    model = ...                             # any mlkernels.nn.Module, same seed on every rank
    dist.broadcast_parameters(model)        # rank 0's weights everywhere
    flat = dist.flat_grads(model)           # gradients now live in one buffer
    opt = mk.optim.AdamW(model.parameters())
    rows = dist.shard(len(x_train))         # this rank's rows
    for x, y in batches(x_train[rows], y_train[rows]):
        loss = forward_loss_backward(model, x, y)   # mean over this rank's rows
        dist.allreduce_grads(flat)          # in place: the mean over every rank
        opt.step(model.grads())

``examples/mlp_distributed.py`` is the whole program (``mpiexec -n 2 python
examples/mlp_distributed.py``); ``docs/scaling.md`` measures a step and models how it scales.

**Dask.** Kernels release the GIL, so ``dask.array.map_blocks`` over a chunked array runs them
in parallel on Dask's worker threads. Each of those threads would otherwise start an OpenMP
team of its own (every core, per worker): ``with_threads(fn)`` runs ``fn`` on one thread per
task, so the workers share the cores instead of oversubscribing them::

    y = x.map_blocks(dist.with_threads(mk.gelu), dtype=x.dtype)

mpi4py is imported only when a function here needs it; Dask is never imported.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Callable, List, Optional, Sequence, Union

import numpy as np

__all__ = ["flat_grads", "broadcast_parameters", "allreduce_grads", "shard",
           "set_threads_per_rank", "with_threads", "world"]

_INSTALL = 'pip install "mlkernels[dist]"'


def _mpi():
    """The ``mpi4py.MPI`` module, or an ImportError that says how to get it."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f"mlkernels.distributed needs mpi4py and an MPI library: "
                          f"{_INSTALL} (mpi4py and MPICH from PyPI), or mpi4py built "
                          f"against your cluster's MPI. ({e})") from e
    except RuntimeError as e:       # mpi4py is there but found no MPI library to load
        raise ImportError(f"mlkernels.distributed: mpi4py found no MPI library: {_INSTALL} "
                          f"brings one (MPICH from PyPI). ({e})") from e
    return MPI


def world(comm: Any = None) -> Any:
    """The communicator the functions here use: ``comm``, or ``MPI.COMM_WORLD``.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        Returned as it is when given.

    Returns
    -------
    mpi4py.MPI.Comm

    Raises
    ------
    ImportError
        If mpi4py or an MPI library is missing (``pip install "mlkernels[dist]"``).

    Examples
    --------
    >>> from mlkernels import distributed as dist
    >>> comm = dist.world()                     # doctest: +SKIP
    >>> comm.rank, comm.size                    # doctest: +SKIP
    (0, 1)
    """
    return comm if comm is not None else _mpi().COMM_WORLD


def _arrays(where: str, model_or_arrays: Any, what: str) -> List[np.ndarray]:
    """The arrays of a Module (``parameters()`` or ``grads()``), or a list of arrays, each
    checked to be a writeable C-contiguous float array (an MPI buffer written in place)."""
    if hasattr(model_or_arrays, "named_parameters"):
        arrays = getattr(model_or_arrays, what)()
    elif isinstance(model_or_arrays, np.ndarray):
        arrays = [model_or_arrays]
    else:
        try:
            arrays = list(model_or_arrays)
        except TypeError:
            raise TypeError(f"{where}: expected an mlkernels.nn.Module, an array or a list of "
                            f"arrays, got {type(model_or_arrays).__name__}") from None
    for i, a in enumerate(arrays):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{where}: {what}[{i}] must be a numpy.ndarray, got "
                            f"{type(a).__name__}")
        if a.dtype not in (np.float32, np.float64):
            raise TypeError(f"{where}: {what}[{i}] has dtype {a.dtype}; expected float32 or "
                            f"float64")
        if not a.flags.writeable or not a.flags.c_contiguous:
            raise ValueError(f"{where}: {what}[{i}] must be writeable and C-contiguous (it is "
                             f"written in place)")
    return arrays


def _flat_view_of(grads: Sequence[np.ndarray]) -> Optional[np.ndarray]:
    """The 1-D buffer ``grads`` are consecutive views of, in order, if they are (what
    ``flat_grads`` made before); else None."""
    base = grads[0].base if grads else None
    if not isinstance(base, np.ndarray) or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    address = base.__array_interface__["data"][0]
    for g in grads:
        if g.base is not base or g.dtype != base.dtype \
                or g.__array_interface__["data"][0] != address:
            return None
        address += g.nbytes
    return base if address == base.__array_interface__["data"][0] + base.nbytes else None


def flat_grads(model: Any, dtype: Any = None) -> np.ndarray:
    """Move a model's gradients into one contiguous buffer and return it.

    Each gradient array becomes a view into the buffer (``model.set_grad_arrays``), in the
    order of ``model.grads()``: the backward writes there from then on, so one in-place
    ``Allreduce`` of the buffer reduces every gradient of a step. The current gradient values
    are kept. Called again on the same model, it returns the same buffer.

    Take ``model.grads()`` for the optimizer *after* this call (the arrays changed).

    Parameters
    ----------
    model : mlkernels.nn.Module
        Any module with ``grads()`` and ``set_grad_arrays()`` (``Sequential``, a transformer).
    dtype : numpy dtype, optional
        The buffer's dtype, which must be that of every gradient (one MPI datatype per
        reduction). Default: the gradients' own dtype.

    Returns
    -------
    numpy.ndarray
        1-D, C-contiguous, ``sum(g.size for g in model.grads())`` elements.

    Raises
    ------
    TypeError
        If ``model`` has no ``grads()`` / ``set_grad_arrays()``, or a gradient is not float32
        or float64.
    ValueError
        If the model has no parameters, or its gradients do not all have ``dtype`` (or one
        dtype, when ``dtype`` is None).

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import nn
    >>> from mlkernels.distributed import flat_grads
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 2))
    >>> flat = flat_grads(model)
    >>> flat.shape, flat.dtype                      # 3*4 + 4 + 4*2 + 2 gradients
    ((26,), dtype('float32'))
    >>> model.grads()[0].base is flat               # the backward writes into the buffer
    True
    """
    where = "flat_grads()"
    if not (hasattr(model, "grads") and hasattr(model, "set_grad_arrays")):
        raise TypeError(f"{where}: expected an mlkernels.nn.Module (with grads() and "
                        f"set_grad_arrays()), got {type(model).__name__}")
    grads = model.grads()
    for i, g in enumerate(grads):
        if not isinstance(g, np.ndarray) or g.dtype not in (np.float32, np.float64):
            raise TypeError(f"{where}: gradient {i} is not a float32 or float64 array")
    if not grads:
        raise ValueError(f"{where}: {type(model).__name__} has no parameters; there is "
                         f"nothing to reduce")
    dtypes = sorted({g.dtype.name for g in grads})
    want = np.dtype(dtype) if dtype is not None else grads[0].dtype
    if dtypes != [want.name]:
        raise ValueError(f"{where}: the gradients have dtype {', '.join(dtypes)}; one buffer "
                         f"needs one dtype ({want.name}). Convert the model's parameters first")
    flat = _flat_view_of(grads)
    if flat is not None:
        return flat
    flat = np.empty(sum(g.size for g in grads), want)
    views, start = [], 0
    for g in grads:
        view = flat[start:start + g.size].reshape(g.shape)
        view[...] = g
        views.append(view)
        start += g.size
    model.set_grad_arrays(views)
    return flat


def broadcast_parameters(model: Any, root: int = 0, comm: Any = None) -> None:
    """Give every rank the root's parameters, in place (call once, before training).

    Every rank must hold the same architecture; that is checked first (one small
    ``allgather`` of the shapes and dtypes), and on a mismatch every rank raises the same
    error instead of blocking in a broadcast.

    Parameters
    ----------
    model : mlkernels.nn.Module or sequence of numpy.ndarray
        The model (its ``parameters()``), or the arrays themselves: writeable, C-contiguous,
        float32 or float64.
    root : int, default 0
        The rank whose values are sent.
    comm : mpi4py.MPI.Comm, optional
        Default ``MPI.COMM_WORLD``.

    Raises
    ------
    ImportError
        If mpi4py or an MPI library is missing.
    TypeError
        If an array is not a float32/float64 numpy array.
    ValueError
        If an array is read-only or not C-contiguous, if ``root`` is not a rank of ``comm``,
        or if the ranks' parameters differ in number, shape or dtype.

    Examples
    --------
    >>> from mlkernels import nn, distributed as dist
    >>> model = nn.Linear(3, 2)                 # different random weights on every rank
    >>> dist.broadcast_parameters(model)        # doctest: +SKIP
    """
    where = "broadcast_parameters()"
    params = _arrays(where, model, "parameters")
    comm = world(comm)
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) \
            or not 0 <= root < comm.size:
        raise ValueError(f"{where}: root={root!r} is not a rank of a communicator of "
                         f"{comm.size}")
    layout = [(p.shape, p.dtype.str) for p in params]
    layouts = comm.allgather(layout)
    for rank, other in enumerate(layouts):
        if other != layouts[root]:
            raise ValueError(f"{where}: rank {rank} has parameters {other}, rank {root} has "
                             f"{layouts[root]}; every rank must build the same model")
    for p in params:
        comm.Bcast(p, root=root)


def allreduce_grads(grads: Union[np.ndarray, Sequence[np.ndarray], Any], comm: Any = None,
                    average: bool = True) -> None:
    """Sum the ranks' gradients in place (and divide by the number of ranks).

    Pass the buffer ``flat_grads`` returned: one ``Allreduce`` for the whole step. A list of
    arrays (or a model) works too, at one ``Allreduce`` per array.

    ``average=True`` turns the ranks' gradients into the gradient of the whole batch when
    each rank's loss is the *mean* over an equal share of it: with n rows on each of p ranks,
    (1/p)·Σ_r (1/n)·Σ_{i∈r} g_i = (1/(np))·Σ_i g_i. For unequal shares, scale each rank's
    loss by its rows over all rows instead and pass ``average=False``.

    Parameters
    ----------
    grads : numpy.ndarray, sequence of numpy.ndarray, or mlkernels.nn.Module
        Writeable C-contiguous float32/float64 arrays, overwritten with the result.
    comm : mpi4py.MPI.Comm, optional
        Default ``MPI.COMM_WORLD``.
    average : bool, default True
        Divide the sum by ``comm.size``.

    Raises
    ------
    ImportError
        If mpi4py or an MPI library is missing.
    TypeError
        If an array is not a float32/float64 numpy array.
    ValueError
        If an array is read-only or not C-contiguous.

    Notes
    -----
    Overlapping the reduction with the backward (a non-blocking ``Iallreduce`` per layer as
    its gradients become ready) was measured and did not help here; ``docs/scaling.md``
    gives the figures and the reason.

    Examples
    --------
    >>> from mlkernels import nn, distributed as dist
    >>> model = nn.Linear(3, 2)
    >>> flat = dist.flat_grads(model)
    >>> dist.allreduce_grads(flat)              # doctest: +SKIP
    """
    where = "allreduce_grads()"
    arrays = _arrays(where, grads, "grads")
    comm = world(comm)
    in_place = _mpi().IN_PLACE
    for a in arrays:
        comm.Allreduce(in_place, a)
        if average and comm.size > 1:
            a /= comm.size      # exact for 2, 4, 8... ranks (a power of two)


def shard(n_items: int, rank: Optional[int] = None, size: Optional[int] = None, *,
          strided: bool = False) -> slice:
    """This rank's share of ``n_items`` (rows of a dataset, say), as a slice.

    Deterministic and balanced: shares differ by at most one item, the first
    ``n_items % size`` ranks take one more (as ``numpy.array_split``), and together the
    shares cover every item exactly once. ``x[shard(len(x))]`` is a view, no copy.

    Parameters
    ----------
    n_items : int
        How many items to split (>= 0).
    rank, size : int, optional
        This rank and the number of ranks. Default: those of ``MPI.COMM_WORLD`` (mpi4py is
        needed only then).
    strided : bool, default False
        False: a contiguous block of items. True: every ``size``-th item from ``rank`` on
        (items ``rank, rank + size, ...``) -- a mix of the whole range on every rank.

    Returns
    -------
    slice

    Raises
    ------
    TypeError
        If ``n_items``, ``rank`` or ``size`` is not an int.
    ValueError
        If ``n_items < 0``, ``size < 1``, or ``rank`` is not in ``[0, size)``.

    Examples
    --------
    >>> from mlkernels.distributed import shard
    >>> [shard(10, r, 3) for r in range(3)]
    [slice(0, 4, None), slice(4, 7, None), slice(7, 10, None)]
    >>> list(range(10)[shard(10, 1, 3, strided=True)])
    [1, 4, 7]

    To shuffle every epoch, permute with a seed every rank shares, then take the share:

    >>> import numpy as np
    >>> order = np.random.default_rng(seed=7).permutation(10)
    >>> order[shard(10, 0, 2)].size
    5
    """
    where = "shard()"
    if rank is None or size is None:
        comm = world()
        rank = comm.rank if rank is None else rank
        size = comm.size if size is None else size
    for name, v in (("n_items", n_items), ("rank", rank), ("size", size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{where}: {name} must be an int, got {type(v).__name__}")
    if n_items < 0:
        raise ValueError(f"{where}: n_items={n_items}; expected >= 0")
    if size < 1:
        raise ValueError(f"{where}: size={size}; expected >= 1")
    if not 0 <= rank < size:
        raise ValueError(f"{where}: rank={rank}; expected 0 <= rank < size={size}")
    n_items, rank, size = int(n_items), int(rank), int(size)
    if strided:
        return slice(rank, n_items, size)
    per, extra = divmod(n_items, size)
    start = rank * per + min(rank, extra)
    return slice(start, start + per + (rank < extra))


def set_threads_per_rank(comm: Any = None) -> int:
    """Give this rank its share of the node's cores: ``mlkernels.set_num_threads``.

    The ranks on one node (``MPI.COMM_TYPE_SHARED``) that may run on the same cores (the same
    CPU affinity: ranks ``mpiexec`` did not bind) split those cores between them, the first
    ones taking one more when they do not divide evenly; a rank bound to its own cores uses
    all of them. ``OMP_NUM_THREADS``, when set, is respected and nothing is changed. Call it
    once at start-up, on every rank (it is collective).

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        Default ``MPI.COMM_WORLD``.

    Returns
    -------
    int
        The threads this rank's kernels now use.

    Raises
    ------
    ImportError
        If mpi4py or an MPI library is missing.

    Examples
    --------
    >>> from mlkernels import distributed as dist
    >>> dist.set_threads_per_rank()     # doctest: +SKIP
    1
    """
    from ._threads import _default_num_threads, get_num_threads, set_num_threads
    MPI = _mpi()
    node = world(comm).Split_type(MPI.COMM_TYPE_SHARED)
    try:
        try:
            mine = tuple(sorted(os.sched_getaffinity(0)))
        except (AttributeError, OSError):
            mine = ()
        masks, node_rank = node.allgather(mine), node.rank
    finally:
        node.Free()
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return get_num_threads()
    sharing = [r for r, m in enumerate(masks) if m == mine]     # node ranks on my cores
    per, extra = divmod(_default_num_threads(), len(sharing))
    n = max(1, per + (sharing.index(node_rank) < extra))
    set_num_threads(n)
    return n


def with_threads(fn: Callable, n: int = 1) -> Callable:
    """``fn`` made to run its kernels on ``n`` threads, whichever thread calls it.

    For the tasks of an engine that already runs many in parallel -- Dask's threaded
    scheduler, a thread pool: each worker thread would otherwise start an OpenMP team as
    large as the machine, and k workers would run k times as many threads as there are
    cores. With ``n=1`` (the default) the workers share the cores. The wrapper sets
    ``mlkernels.threads(n)`` around each call, in the calling thread only.

    Parameters
    ----------
    fn : callable
        Any function calling mlkernels kernels (``mk.gelu``, a lambda, a whole layer).
    n : int, default 1
        Threads per call.

    Returns
    -------
    callable
        Takes and returns what ``fn`` does.

    Raises
    ------
    TypeError
        If ``fn`` is not callable or ``n`` not an int.
    ValueError
        If ``n < 1``.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> from mlkernels.distributed import with_threads
    >>> serial_gelu = with_threads(mk.gelu)
    >>> serial_gelu(np.zeros(3, np.float32))
    array([0., 0., 0.], dtype=float32)

    With Dask (``x`` a ``dask.array``; tasks run on Dask's worker threads)::

        y = x.map_blocks(with_threads(mk.gelu), dtype=x.dtype).compute()
    """
    from ._threads import _check, threads
    if not callable(fn):
        raise TypeError(f"with_threads(): fn must be callable, got {type(fn).__name__}")
    _check(n)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with threads(n):
            return fn(*args, **kwargs)
    return call
