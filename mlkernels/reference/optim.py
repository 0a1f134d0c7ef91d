"""Reference optimizer steps (float64 NumPy), one parameter array at a time, as in a textbook.

Each function takes lists (params, grads, state...) like the fast functional steps in
``mlkernels.optim`` and *returns* the new values, in float64, without touching its inputs:
``(new_params, new_state_1, new_state_2, ...)``, each a list of arrays.
"""
import numpy as np

__all__ = ["sgd_step", "adam_step", "adamw_step", "rmsprop_step", "adagrad_step"]


def _f64(arrays):
    if arrays is None:
        return None
    if isinstance(arrays, np.ndarray):
        arrays = [arrays]
    return [np.array(a, dtype=np.float64, copy=True) for a in arrays]


def sgd_step(params, grads, momentum_buffers=None, *, step=1, lr=1e-3, momentum=0.0,
             dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    params, grads, bufs = _f64(params), _f64(grads), _f64(momentum_buffers)
    new_p, new_b = [], []
    for i, (p, g) in enumerate(zip(params, grads)):
        d = -g if maximize else g
        if weight_decay != 0:
            d = d + weight_decay * p
        if momentum != 0:
            if step == 1:
                b = d.copy()                                   # the first step starts the buffer
            else:
                b = momentum * bufs[i] + (1 - dampening) * d
            d = d + momentum * b if nesterov else b
            new_b.append(b)
        new_p.append(p - lr * d)
    return (new_p, new_b) if momentum != 0 else (new_p,)


def _adam(decoupled, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step, lr, betas,
          eps, weight_decay, amsgrad, maximize):
    beta1, beta2 = betas
    params, grads = _f64(params), _f64(grads)
    ms, vs, vmaxs = _f64(exp_avgs), _f64(exp_avg_sqs), _f64(max_exp_avg_sqs)
    new_p, new_m, new_v, new_vmax = [], [], [], []
    for i, (p, g) in enumerate(zip(params, grads)):
        g = -g if maximize else g
        if decoupled:
            p = p * (1 - lr * weight_decay)                    # AdamW: decay the weights
        elif weight_decay != 0:
            g = g + weight_decay * p                           # Adam: L2 into the gradient
        m = beta1 * ms[i] + (1 - beta1) * g                    # first moment
        v = beta2 * vs[i] + (1 - beta2) * g * g                # second moment
        m_hat = m / (1 - beta1 ** step)                        # bias corrections
        if amsgrad:
            vmax = np.maximum(vmaxs[i], v)                     # running max of the raw v
            new_vmax.append(vmax)
            v_hat = vmax / (1 - beta2 ** step)
        else:
            v_hat = v / (1 - beta2 ** step)
        new_p.append(p - lr * m_hat / (np.sqrt(v_hat) + eps))
        new_m.append(m)
        new_v.append(v)
    return (new_p, new_m, new_v, new_vmax) if amsgrad else (new_p, new_m, new_v)


def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs=None, *, step, lr=1e-3,
              betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False):
    return _adam(False, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step, lr, betas,
                 eps, weight_decay, amsgrad, maximize)


def adamw_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs=None, *, step, lr=1e-3,
               betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False):
    return _adam(True, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step, lr, betas,
                 eps, weight_decay, amsgrad, maximize)


def rmsprop_step(params, grads, square_avgs, momentum_buffers=None, grad_avgs=None, *, lr=1e-2,
                 alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                 maximize=False):
    params, grads, sqs = _f64(params), _f64(grads), _f64(square_avgs)
    bufs, gavgs = _f64(momentum_buffers), _f64(grad_avgs)
    new_p, new_s, new_b, new_g = [], [], [], []
    for i, (p, g) in enumerate(zip(params, grads)):
        g = -g if maximize else g
        if weight_decay != 0:
            g = g + weight_decay * p
        s = alpha * sqs[i] + (1 - alpha) * g * g               # running mean of g²
        if centered:
            gbar = alpha * gavgs[i] + (1 - alpha) * g          # running mean of g
            avg = np.sqrt(s - gbar * gbar) + eps               # ≈ standard deviation of g
            new_g.append(gbar)
        else:
            avg = np.sqrt(s) + eps
        if momentum > 0:
            b = momentum * bufs[i] + g / avg
            new_p.append(p - lr * b)
            new_b.append(b)
        else:
            new_p.append(p - lr * g / avg)
        new_s.append(s)
    out = (new_p, new_s)
    if momentum > 0:
        out += (new_b,)
    if centered:
        out += (new_g,)
    return out


def adagrad_step(params, grads, state_sums, *, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 eps=1e-10, maximize=False):
    params, grads, sums = _f64(params), _f64(grads), _f64(state_sums)
    new_p, new_s = [], []
    clr = lr / (1 + (step - 1) * lr_decay)                      # decayed learning rate
    for i, (p, g) in enumerate(zip(params, grads)):
        g = -g if maximize else g
        if weight_decay != 0:
            g = g + weight_decay * p
        s = sums[i] + g * g                                    # sum of squared gradients
        new_p.append(p - clr * g / (np.sqrt(s) + eps))
        new_s.append(s)
    return new_p, new_s
