r"""The k-Adam optimizer (Eq. 10, App. R, Algorithm 1 in App. S).

k-Adam applies the *adaptive normalization* operator of App. R k times:

.. math::

    u_n^{(0)} = g_n, \qquad
    u_n^{(i)} = \frac{\sqrt{1-\beta_i^{n+1}}}{1-\gamma_i^{n+1}}
                \frac{m_n^{(i)}}{\sqrt{v_n^{(i)}} + \epsilon}, \qquad
    \theta_{n+1} = \theta_n - \eta\, u_n^{(k)}

where level ``i`` keeps the moving averages
``m^(i) <- gamma_i m^(i) + (1 - gamma_i) u^(i-1)`` and
``v^(i) <- beta_i v^(i) + (1 - beta_i) (u^(i-1))^2``.
``k = 1`` is Adam (coupled weight decay) or AdamW (decoupled).
:func:`adaptive_normalization` is one level; :class:`KAdam` chains it k times.

Notation trap: the paper writes ``beta`` for the second-moment decay and
``gamma`` for the first-moment decay. :class:`KAdam` follows ``torch.optim``:
``betas=(gamma, beta)``. Per-level hyperparameters are always
:class:`Level` named tuples, ``Level(gamma=..., beta=...)``.

Modules, from the bottom up:

- :mod:`~kadam_edu.optim.levels`: :class:`Level`, Section 4.2's strategies
  (:func:`kadam_levels`) and the hyperparameter checks;
- :mod:`~kadam_edu.optim.functional`: :func:`bias_correction` (Eq. 1), one level
  (:func:`adaptive_normalization`), and the single-tensor and foreach steps chaining it k times;
- :mod:`~kadam_edu.optim.fused`: the whole step as one compiled kernel (:class:`FlatKAdam`);
- :mod:`~kadam_edu.optim.groups`: the checks of a param group and of the parameters that step;
- :mod:`~kadam_edu.optim.kadam`: the :class:`KAdam` class (state, state dicts, step dispatch).
"""

from kadam_edu.optim.functional import adaptive_normalization, bias_correction
from kadam_edu.optim.fused import FUSED_DTYPES, FlatKAdam
from kadam_edu.optim.groups import SparseGradientError
from kadam_edu.optim.kadam import KAdam
from kadam_edu.optim.levels import STRATEGIES, Level, check_levels, kadam_levels

__all__ = [
    "KAdam",
    "Level",
    "kadam_levels",
    "check_levels",
    "adaptive_normalization",
    "bias_correction",
    "STRATEGIES",
    "SparseGradientError",
    "FlatKAdam",
    "FUSED_DTYPES",
]
