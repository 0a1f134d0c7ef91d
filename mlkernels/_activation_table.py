"""The activation family, one row per kernel: everything that differs from one activation to
the next, in one place. ``mlkernels/_generate.py`` expands these rows, through the Tempita
templates ``*.tp`` beside their outputs, into

* ``_act.pxd``: the operation enum and each activation's forward and backward kernel (the
  loop, under its math; shared with the fused linear + activation of ``_linear.pyx``);
* ``_activations.pyx``: the entries the public functions call, one per kernel;
* ``activations.py``: the public functions (signature, parameter checks, docstring) and the
  operation codes the fused linear takes (``linear.ACTIVATIONS`` reads them);
* ``specs/activations.py``: the spec rows (reference, gradient check, elementwise battery,
  fuzzing, bench cases beside NumPy and PyTorch).

Adding an activation: a row here, its float64 reference (``<name>`` and ``<name>_backward``
in ``mlkernels/reference/activations.py``), then ``python mlkernels/_generate.py`` and a
rebuild. docs/kernels/activations.md says more. This file imports nothing from mlkernels: the
generator loads it by path, before the package is built.

How a row's loop bodies are written (they become the loops of ``_act.pxd``, one per
direction, over ``floating``, the fused type of float and double):

* the forward sets ``y[i]`` from ``x[i]``, the backward sets ``gx[i]`` from ``g[i]`` (the
  gradient of the output) and ``x[i]`` (the forward's *input*, as torch's backward kernels
  take it); the row's parameters are ``floating`` variables of their own names, and the
  scratch variables the bodies use are listed in ``scratch``;
* for the vectorizer: no branches (``a if c else b`` selects, computed for every element),
  no libm (the inline math of ``_vecmath.pxd``: ``v_exp``, ``v_sigmoid``, ``v_ndtr``, ...),
  constants typed ``<floating>`` (a bare ``0.5`` is a double in C), and ``v_select`` where a
  select would load ``g`` under a mask (``_vecmath.pxd`` says why);
* ``*_setup`` runs once per call (per chunk) before the loop.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple, Union


@dataclass(frozen=True)
class Param:
    """A parameter of the public function (after ``x``; the backward takes it too)."""
    name: str
    default: Union[float, str]
    doc: str                            # the docstring's description
    low: Optional[float] = None         # checks (mlkernels._validate.number): finite, and in
    high: Optional[float] = None        # [low, high]; low_open/high_open exclude the end
    low_open: bool = False
    high_open: bool = False
    choices: Tuple[str, ...] = ()       # a string choosing the kernel (gelu's approximate)
    tested: Union[float, str, None] = None  # the value the spec rows test (None: default)


@dataclass(frozen=True)
class Torch:
    """PyTorch's kernels, the bench's peers, as Python expressions over x, g (the gradient of
    the output), y (an output buffer) and the row's parameters by name; F is
    torch.nn.functional, nn torch._C._nn, aten torch.ops.aten, SELU (α, λ) of selu. None:
    torch has none."""
    forward: Optional[str] = None
    forward_out: Optional[str] = None   # writing into y
    backward: Optional[str] = None      # the aten op autograd calls
    backward_out: Optional[str] = None  # the same, writing into y


@dataclass(frozen=True)
class Activation:
    name: str               # the kernel: Op NAME, _act.pxd's <name> and <name>_backward,
    #                         the entry of _activations.pyx, linear(..., activation=<name>)
    math: str               # y = f(x), for the kernel's comment and the docstring
    derivative: str         # f'(x)
    forward: str            # the forward loop's body (Cython): sets y[i]
    backward: str           # the backward loop's body: sets gx[i]
    summary: str = ""       # the public function's first docstring line
    notes: str = ""         # the docstring's explanation after the math
    example: str = ""       # doctest lines of the forward's Examples section
    backward_example: str = ""
    params: Tuple[Param, ...] = ()
    scratch: str = ""       # the loops' scratch variables (floating), space-separated
    forward_setup: str = ""
    backward_setup: str = ""
    how: str = ""           # the kernel's comment: why the loop is written this way
    # Large outputs are written with streaming stores (from 16 MiB, _stream.h) where memory,
    # not arithmetic, bounds the loop: (forward, backward). Measured per activation,
    # streamed against not (docs/kernels/activations.md).
    streams: Tuple[bool, bool] = (True, True)
    # Loops that only move memory start threads later (a larger serial threshold,
    # _runtime.pxd) than loops that compute (exp, erf, tanh, a division).
    memory_bound: bool = False
    # bfloat16 storage: a one-pass loop of its own (uint16 load, widen, this row's float32
    # expression, round), in place of the blockwise driver's three passes; for memory-bound
    # rows where it measured faster (docs/kernels/bf16.md). Code: two loops more per row.
    fused16: bool = False
    linear: bool = False    # the fused linear + activation takes it
    public: str = ""        # the public function, when another kernel's (gelu_tanh: gelu)
    when: Tuple[str, str] = ("", "")   # (parameter, value) choosing this kernel
    kinks: Tuple[float, ...] = ()      # where f' jumps: gradient checks keep away from them
    numpy: Optional[str] = None        # NumPy's composition (bench), over x and y (np, sp:
    numpy_backward: Optional[str] = None   # scipy.special; constants: SQRT2, ...), over g and x
    torch: Torch = field(default_factory=Torch)
    torch_name: str = ""    # torch.nn.functional.<torch_name> (default: the public name)

    @property
    def function(self) -> str:
        """The public function (mlkernels.<function>) this kernel serves."""
        return self.public or self.name


ACTIVATIONS = (
    Activation(
        "relu",
        summary="Rectified linear unit: max(x, 0).",
        math="y = max(x, 0); NaN and -0 pass through",
        derivative="1 if x > 0 else 0 (0 at the kink x = 0; NaN where x is NaN)",
        forward="y[i] = 0 if x[i] < 0 else x[i]",
        backward="gx[i] = v_select(x[i] > 0, g[i], x[i] if x[i] != x[i] else 0)",
        how="The backward selects on the bits (v_select): as a plain select GCC loaded g under "
            "a mask, and the loop ran slower from memory than leaky_relu's, which loads g for "
            "both arms (docs/kernels/activations.md).",
        memory_bound=True, linear=True, kinks=(0.0,),
        example=">>> mk.relu(np.array([-2.0, 0.0, 1.5]))\narray([0. , 0. , 1.5])",
        backward_example=">>> mk.relu_backward(np.ones(3), np.array([-2.0, 0.0, 1.5]))\n"
                         "array([0., 0., 1.])",
        numpy="np.maximum(x, 0, out=y)",
        numpy_backward="np.where(x > 0, g, 0)",
        torch=Torch("F.relu(x)", "torch.clamp_min(x, 0, out=y)",
                    "aten.threshold_backward(g, x, 0)",
                    "aten.threshold_backward.grad_input(g, x, 0.0, grad_input=y)")),
    Activation(
        "leaky_relu",
        summary="Leaky ReLU: x where x > 0, negative_slope·x elsewhere.",
        math="y = x if x > 0 else negative_slope·x",
        derivative="1 if x > 0 else negative_slope",
        params=(Param("negative_slope", 0.01, "The slope for x ≤ 0.", tested=0.1),),
        forward="y[i] = x[i] if x[i] > 0 else negative_slope * x[i]",
        backward="gx[i] = g[i] if x[i] > 0 else negative_slope * g[i]",
        memory_bound=True, fused16=True, kinks=(0.0,),
        example=">>> mk.leaky_relu(np.array([-2.0, 0.0, 1.5]), negative_slope=0.1)\n"
                "array([-0.2,  0. ,  1.5])",
        backward_example=">>> mk.leaky_relu_backward(np.ones(3), np.array([-2.0, 0.0, 1.5]), "
                         "0.1)\narray([0.1, 0.1, 1. ])",
        numpy="np.where(x > 0, x, negative_slope * x)",
        torch=Torch("F.leaky_relu(x, negative_slope)", "nn.leaky_relu(x, negative_slope, out=y)",
                    "aten.leaky_relu_backward(g, x, negative_slope, False)",
                    "aten.leaky_relu_backward.grad_input(g, x, negative_slope, False, "
                    "grad_input=y)")),
    Activation(
        "elu",
        summary="Exponential linear unit: x where x > 0, alpha·(eˣ − 1) elsewhere.",
        math="y = x if x > 0 else alpha·(e^x − 1)",
        derivative="1 if x > 0 else alpha·e^x",
        params=(Param("alpha", 1.0, "The value y approaches as x → −∞ is −alpha.",
                      tested=1.3),),
        scratch="e",
        forward="e = alpha * v_expm1(x[i])\n"
                "y[i] = x[i] if x[i] > 0 else e",
        backward="e = alpha * v_exp_nonpositive(x[i])\n"
                 "gx[i] = g[i] * (<floating>1 if x[i] > 0 else e)",
        how="e^x − 1 through expm1: full relative accuracy near 0. Both arms are computed for "
            "every element, then one is selected.",
        streams=(False, True), kinks=(0.0,),
        example=">>> mk.elu(np.array([-2.0, 0.0, 1.5])).round(4)\n"
                "array([-0.8647,  0.    ,  1.5   ])",
        backward_example=">>> mk.elu_backward(np.ones(3), np.array([-2.0, 0.0, 1.5]))"
                         ".round(4)\narray([0.1353, 1.    , 1.    ])",
        numpy="np.where(x > 0, x, alpha * np.expm1(x))",
        torch=Torch("F.elu(x, alpha)", "nn.elu(x, alpha, 1.0, 1.0, out=y)",
                    "aten.elu_backward(g, alpha, 1.0, 1.0, False, x)",
                    "aten.elu_backward.grad_input(g, alpha, 1.0, 1.0, False, x, grad_input=y)")),
    Activation(
        "selu",
        summary="Scaled ELU: λ·(x where x > 0, α·(eˣ − 1) elsewhere), self-normalizing.",
        math="y = λ·(x if x > 0 else α·(e^x − 1)), α = 1.6732632423543772, "
             "λ = 1.0507009873554805",
        derivative="λ if x > 0 else λ·α·e^x",
        scratch="e",
        forward="e = <floating>SELU_ALPHA * v_expm1(x[i])\n"
                "y[i] = <floating>SELU_SCALE * (x[i] if x[i] > 0 else e)",
        backward="e = <floating>SELU_ALPHA * v_exp_nonpositive(x[i])\n"
                 "gx[i] = g[i] * <floating>SELU_SCALE * (<floating>1 if x[i] > 0 else e)",
        streams=(False, True), kinks=(0.0,),
        example=">>> mk.selu(np.array([-2.0, 0.0, 1.5])).round(4)\n"
                "array([-1.5202,  0.    ,  1.5761])",
        backward_example=">>> mk.selu_backward(np.ones(3), np.array([-2.0, 0.0, 1.5]))"
                         ".round(4)\narray([0.2379, 1.7581, 1.0507])",
        numpy="1.0507 * np.where(x > 0, x, 1.6733 * np.expm1(x))",
        torch=Torch("F.selu(x)", "nn.elu(x, *SELU, 1.0, out=y)",
                    "aten.elu_backward(g, *SELU, 1.0, False, x)",
                    "aten.elu_backward.grad_input(g, *SELU, 1.0, False, x, grad_input=y)")),
    Activation(
        "gelu",
        summary="Gaussian error linear unit: x·Φ(x), or its tanh approximation.",
        math="y = x·Φ(x), Φ the standard normal CDF",
        derivative="Φ(x) + x·φ(x), φ the standard normal density",
        notes="With ``approximate=\"tanh\"``: y = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). "
              "Both keep their relative accuracy in the left tail (gelu(−10) ≈ −7.6e-23).",
        params=(Param("approximate", "none", "The exact form, or the tanh approximation.",
                      choices=("none", "tanh")),),
        when=("approximate", "none"),
        forward="y[i] = x[i] * v_ndtr(x[i])",
        backward="gx[i] = g[i] * (v_ndtr(x[i]) + x[i] * v_npdf(x[i]))",
        how="Φ and φ are _vecmath.h's vectorizable erfc-based pieces, relative in the left "
            "tail.",
        streams=(False, False), linear=True,
        example=">>> mk.gelu(np.array([-2.0, 0.0, 1.5])).round(4)\n"
                "array([-0.0455,  0.    ,  1.3998])\n"
                ">>> mk.gelu(np.array([-2.0, 0.0, 1.5]), approximate=\"tanh\").round(4)\n"
                "array([-0.0454,  0.    ,  1.3996])",
        backward_example=">>> mk.gelu_backward(np.ones(3), np.array([-2.0, 0.0, 1.5]))"
                         ".round(4)\narray([-0.0852,  0.5   ,  1.1275])",
        numpy="0.5 * x * (1 + sp.erf(x / SQRT2))",
        numpy_backward="g * (0.5 * (1 + sp.erf(x / SQRT2)) + x * np.exp(-0.5 * x * x) * "
                       "INV_SQRT_2PI)",
        torch=Torch("F.gelu(x, approximate=approximate)",
                    "nn.gelu(x, approximate=approximate, out=y)",
                    "aten.gelu_backward(g, x, approximate=approximate)",
                    "aten.gelu_backward.grad_input(g, x, approximate=approximate, "
                    "grad_input=y)")),
    Activation(
        "gelu_tanh",
        public="gelu", when=("approximate", "tanh"),
        math="y = 0.5·x·(1 + tanh(u)) = x·σ(2u), u = √(2/π)·(x + 0.044715·x³)",
        derivative="σ(2u) + 2x·σ'(2u)·u', u' = √(2/π)·(1 + 3·0.044715·x²)",
        scratch="v u xc d",
        forward="v = x[i]\n"
                "u = <floating>SQRT_2_OVER_PI * (v + <floating>GELU_C * v * v * v)\n"
                "y[i] = v * v_sigmoid(u + u)",
        backward="v = x[i]\n"
                 "u = <floating>SQRT_2_OVER_PI * (v + <floating>GELU_C * v * v * v)\n"
                 "# σ'(2u) is exactly 0 for |x| > 1e4: clamp x there so that x·u' stays finite\n"
                 "xc = v if v_abs(v) < 1e4 else (<floating>1e4 if v > 0 else <floating>-1e4)\n"
                 "d = <floating>SQRT_2_OVER_PI * (<floating>1 + <floating>(3 * GELU_C) * xc * xc)\n"
                 "gx[i] = g[i] * (v_sigmoid(u + u) + (xc + xc) * sigmoid_slope(u + u) * d)",
        how="The σ form: 1 + tanh(u) cancels for x << 0, 2σ(2u) does not.",
        streams=(False, True), linear=True,
        numpy="0.5 * x * (1 + np.tanh(SQRT_2_OVER_PI * (x + GELU_C * x ** 3)))",
        torch=Torch("F.gelu(x, approximate=approximate)",
                    "nn.gelu(x, approximate=approximate, out=y)",
                    "aten.gelu_backward(g, x, approximate=approximate)",
                    "aten.gelu_backward.grad_input(g, x, approximate=approximate, "
                    "grad_input=y)")),
    Activation(
        "silu",
        summary="Sigmoid linear unit: x·σ(x) (swish with beta = 1).",
        math="y = x·σ(x)",
        derivative="σ(x) + x·σ'(x) = σ(x)·(1 + x·(1 − σ(x)))",
        forward="y[i] = x[i] * v_sigmoid(x[i])",
        backward="gx[i] = g[i] * (v_sigmoid(x[i]) + x[i] * sigmoid_slope(x[i]))",
        how="σ and σ' share e^−|x| and 1/(1 + e^−|x|) in the backward (sigmoid_slope).",
        linear=True,
        example=">>> mk.silu(np.array([-2.0, 0.0, 1.5])).round(4)\n"
                "array([-0.2384,  0.    ,  1.2264])",
        backward_example=">>> mk.silu_backward(np.ones(3), np.array([-2.0, 0.0, 1.5]))"
                         ".round(4)\narray([-0.0908,  0.5   ,  1.0413])",
        numpy="x / (1 + np.exp(-x))",
        numpy_backward="g * sp.expit(x) * (1 + x * (1 - sp.expit(x)))",
        torch=Torch("F.silu(x)", "nn.silu(x, out=y)", "aten.silu_backward(g, x)",
                    "aten.silu_backward.grad_input(g, x, grad_input=y)")),
    Activation(
        "swish",
        summary="Swish: x·σ(beta·x).",
        math="y = x·σ(beta·x)",
        derivative="σ(βx) + βx·σ'(βx) (the gradient with respect to x only)",
        notes="``silu`` is swish with beta = 1. PyTorch has no swish with a beta.",
        params=(Param("beta", 1.0, "The slope inside the sigmoid.", tested=1.7),),
        scratch="v",
        forward="y[i] = x[i] * v_sigmoid(beta * x[i])",
        backward="v = beta * x[i]\n"
                 "gx[i] = g[i] * (v_sigmoid(v) + v * sigmoid_slope(v))",
        example=">>> mk.swish(np.array([-2.0, 0.0, 1.5]), beta=2.0).round(4)\n"
                "array([-0.036 ,  0.    ,  1.4289])",
        backward_example=">>> mk.swish_backward(np.ones(3), np.array([-2.0, 0.0, 1.5]), "
                         "beta=2.0).round(4)\narray([-0.0527,  0.5   ,  1.0881])",
        numpy="x / (1 + np.exp(-beta * x))",
        torch_name="silu"),
    Activation(
        "sigmoid",
        summary="The logistic sigmoid: 1 / (1 + e⁻ˣ).",
        math="y = σ(x) = 1/(1 + e^−x)",
        derivative="σ'(x) = σ(x)·(1 − σ(x))",
        notes="Computed through e^−|x|: it never overflows, and the left tail keeps its "
              "relative accuracy.",
        forward="y[i] = v_sigmoid(x[i])",
        backward="gx[i] = g[i] * sigmoid_slope(x[i])",
        how="σ' as z/(1 + z)², z = e^−|x|: no cancellation of 1 − σ near σ = 1.",
        linear=True,
        example=">>> mk.sigmoid(np.array([-2.0, 0.0, 1.5])).round(4)\n"
                "array([0.1192, 0.5   , 0.8176])",
        backward_example=">>> mk.sigmoid_backward(np.ones(3), np.array([-2.0, 0.0, 1.5]))"
                         ".round(4)\narray([0.105 , 0.25  , 0.1491])",
        numpy="sp.expit(x, out=y)",
        torch=Torch("torch.sigmoid(x)", "torch.sigmoid(x, out=y)",
                    "aten.sigmoid_backward(g, x)",
                    "aten.sigmoid_backward.grad_input(g, x, grad_input=y)"),
        torch_name="sigmoid"),
    Activation(
        "tanh",
        summary="The hyperbolic tangent.",
        math="y = tanh(x)",
        derivative="1 − tanh²(x)",
        forward="y[i] = v_tanh(x[i])",
        backward="gx[i] = g[i] * (<floating>4 * sigmoid_slope(x[i] + x[i]))",
        how="The backward as 1 − tanh²(x) = 4σ'(2x): no cancellation near tanh = ±1.",
        linear=True,
        example=">>> mk.tanh(np.array([-2.0, 0.0, 1.5])).round(4)\n"
                "array([-0.964 ,  0.    ,  0.9051])",
        backward_example=">>> mk.tanh_backward(np.ones(3), np.array([-2.0, 0.0, 1.5]))"
                         ".round(4)\narray([0.0707, 1.    , 0.1807])",
        numpy="np.tanh(x, out=y)",
        torch=Torch("torch.tanh(x)", "torch.tanh(x, out=y)", "aten.tanh_backward(g, x)",
                    "aten.tanh_backward.grad_input(g, x, grad_input=y)"),
        torch_name="tanh"),
    Activation(
        "softplus",
        summary="Softplus: log(1 + e^(beta·x))/beta, a smooth ReLU.",
        math="y = log(1 + e^(beta·x))/beta, or x where beta·x > threshold",
        derivative="σ(beta·x), or 1 where beta·x > threshold",
        notes="Above the threshold the function reverts to the identity, as torch's does.",
        params=(Param("beta", 1.0, "The sharpness: larger beta is closer to relu.", low=0.0,
                      low_open=True, tested=2.0),
                Param("threshold", 20.0, "Where beta·x is larger, y is x.", tested=15.0)),
        scratch="v e inv_beta",
        forward_setup="inv_beta = 1 / beta           # one division per call, not per element",
        forward="v = beta * x[i]\n"
                "e = v_softplus(v) * inv_beta\n"
                "y[i] = x[i] if v > threshold else e",
        backward="v = beta * x[i]\n"
                 "e = v_sigmoid(v)\n"
                 "gx[i] = g[i] * (<floating>1 if v > threshold else e)",
        how="log(1 + e^v) as max(v, 0) + log1p(e^−|v|): never overflows, relative in the left "
            "tail.",
        streams=(False, True),
        example=">>> mk.softplus(np.array([-2.0, 0.0, 1.5])).round(4)\n"
                "array([0.1269, 0.6931, 1.7014])",
        backward_example=">>> mk.softplus_backward(np.ones(3), np.array([-2.0, 0.0, 1.5]))"
                         ".round(4)\narray([0.1192, 0.5   , 0.8176])",
        numpy="np.logaddexp(0, beta * x) / beta",
        torch=Torch("F.softplus(x, beta, threshold)", "nn.softplus(x, beta, threshold, out=y)",
                    "aten.softplus_backward(g, x, beta, threshold)",
                    "aten.softplus_backward.grad_input(g, x, beta, threshold, grad_input=y)")),
    Activation(
        "hardswish",
        summary="Hard swish: x·relu6(x + 3)/6, a piecewise-quadratic swish (MobileNetV3).",
        math="y = x·min(max(x + 3, 0), 6)/6",
        derivative="0 for x ≤ −3, x/3 + 1/2 for −3 < x < 3, 1 for x ≥ 3",
        notes="The derivative at the kinks is torch's: 0 at x = −3, 1 at x = 3. NaN passes "
              "through both directions (torch's backward returns grad_out for a NaN x in its "
              "scalar tail loop).",
        scratch="r d",
        forward="r = x[i] + <floating>3        # relu6(x + 3); NaN passes through\n"
                "r = <floating>0 if r < 0 else r\n"
                "r = <floating>6 if r > 6 else r\n"
                "y[i] = x[i] * r / <floating>6",
        backward="d = x[i] / <floating>3 + <floating>0.5      # the slope between the kinks\n"
                 "d = <floating>1 if x[i] >= 3 else d\n"
                 "gx[i] = v_select(x[i] <= -3, <floating>0, g[i] * d)",
        how="Arithmetic as torch's (x·r/6, x/3 + 1/2). min and max are selects written so that "
            "NaN passes through.",
        memory_bound=True, linear=True, kinks=(-3.0, 3.0),
        example=">>> mk.hardswish(np.array([-4.0, -1.0, 0.0, 1.5, 3.0])).round(4)\n"
                "array([-0.    , -0.3333,  0.    ,  1.125 ,  3.    ])",
        backward_example=">>> mk.hardswish_backward(np.ones(5), np.array([-3.0, -1.0, 0.0, "
                         "1.5, 3.0])).round(4)\narray([0.    , 0.1667, 0.5   , 1.    , 1.    ])",
        numpy="x * np.clip(x + 3, 0, 6) / 6",
        numpy_backward="np.where(x <= -3, 0, np.where(x >= 3, g, g * (x / 3 + 0.5)))",
        torch=Torch("F.hardswish(x)", "nn.hardswish(x, out=y)", "aten.hardswish_backward(g, x)",
                    "aten.hardswish_backward.out(g, x, out=y)")),
    Activation(
        "hardsigmoid",
        summary="Hard sigmoid: relu6(x + 3)/6, a piecewise-linear sigmoid (MobileNetV3).",
        math="y = min(max(x + 3, 0), 6)/6",
        derivative="1/6 for −3 < x < 3, else 0 (0 at the kinks, as torch)",
        notes="NaN passes through both directions (torch's backward returns 0 for a NaN x). "
              "torch's float64 backward multiplies by 1/6 rounded to float32; this one uses "
              "the double 1/6.",
        scratch="r s",
        forward="r = x[i] + <floating>3        # relu6(x + 3); NaN passes through\n"
                "r = <floating>0 if r < 0 else r\n"
                "r = <floating>6 if r > 6 else r\n"
                "y[i] = r / <floating>6",
        backward="s = v_select((x[i] > -3) & (x[i] < 3), g[i],\n"
                 "             x[i] if x[i] != x[i] else <floating>0)\n"
                 "gx[i] = s * <floating>(1.0 / 6)",
        how="The backward selects, on the bits (v_select: no masked load of g), g inside the "
            "kinks, x where x is NaN and 0 elsewhere, then scales by 1/6.",
        memory_bound=True, linear=True, kinks=(-3.0, 3.0),
        example=">>> mk.hardsigmoid(np.array([-4.0, -1.0, 0.0, 1.5, 3.0])).round(4)\n"
                "array([0.    , 0.3333, 0.5   , 0.75  , 1.    ])",
        backward_example=">>> mk.hardsigmoid_backward(np.ones(5), np.array([-3.0, -1.0, 0.0, "
                         "1.5, 3.0])).round(4)\narray([0.    , 0.1667, 0.1667, 0.1667, 0.    ])",
        numpy="np.clip(x + 3, 0, 6) / 6",
        numpy_backward="np.where((x > -3) & (x < 3), g / 6, 0)",
        torch=Torch("F.hardsigmoid(x)", "nn.hardsigmoid(x, out=y)",
                    "aten.hardsigmoid_backward(g, x)",
                    "aten.hardsigmoid_backward.grad_input(g, x, grad_input=y)")),
    Activation(
        "mish",
        summary="Mish: x·tanh(softplus(x)), a smooth self-gated activation (YOLOv4).",
        math="y = x·tanh(log(1 + e^x))",
        derivative="tanh(sp) + x·σ(x)·(1 − tanh²(sp)), sp = softplus(x)",
        notes="Computed from z = e^−|x| alone: with n = e^x, tanh(log(1 + n)) = "
              "n(n + 2)/(n(n + 2) + 2), written over z for either sign of x, never overflows "
              "and needs one exponential and one division (torch: an exponential, a log1p "
              "and a tanh).",
        scratch="z num r q s",
        forward="z = v_exp_neg_abs(x[i])\n"
                "# tanh(softplus(x)) = num/den, over z: x ≥ 0: (1 + 2z)/(1 + 2z + 2z²),\n"
                "# x < 0: z(z + 2)/(z(z + 2) + 2)\n"
                "num = (<floating>1 + z + z) if x[i] >= 0 else z * (z + <floating>2)\n"
                "y[i] = x[i] * num / (num + (<floating>2 * z * z if x[i] >= 0 else <floating>2))",
        backward="z = v_exp_neg_abs(x[i])\n"
                 "num = (<floating>1 + z + z) if x[i] >= 0 else z * (z + <floating>2)\n"
                 "r = <floating>1 / (num + (<floating>2 * z * z if x[i] >= 0 else <floating>2))\n"
                 "# σ(x)·(1 − tanh²(softplus(x))) = 4z(1 + z)·q/den², q = z (x ≥ 0) or 1\n"
                 "q = z if x[i] >= 0 else <floating>1\n"
                 "s = <floating>4 * z * (<floating>1 + z) * q * r * r\n"
                 "gx[i] = g[i] * (num * r + x[i] * s)",
        how="One e^−|x| and one division per element; 1 − tanh² is formed from z, not by "
            "subtracting from 1.",
        linear=True,
        example=">>> mk.mish(np.array([-2.0, 0.0, 1.5])).round(4)\n"
                "array([-0.2525,  0.    ,  1.4034])",
        backward_example=">>> mk.mish_backward(np.ones(3), np.array([-2.0, 0.0, 1.5]))"
                         ".round(4)\narray([-0.1084,  0.6   ,  1.0885])",
        numpy="x * np.tanh(np.logaddexp(0, x))",
        torch=Torch("F.mish(x)", "nn.mish(x, out=y)", "aten.mish_backward(g, x)", None)),
)
