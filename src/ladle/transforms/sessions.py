"""Daily-close ("session") statistics behind ``rsi_14d`` and ``volatility_7d``, as SQL CTEs.

A session is the 24 h interval ``(D-1 + close, D + close]`` for a UTC ``session_close`` time of
day; its close is the last price in it. For every session the CTEs below compute the state
*before* that session opens: the previous close, Wilder's smoothed average gain and loss after
the previous close, and the moments of the completed daily log returns of the trailing
window. A tick then combines that state with its own price used as the provisional close of
its session, so intraday values move with the price while only using data at or before the
tick.

Wilder's smoothing ``avg_i = r * avg_(i-1) + x_i / N`` with ``r = (N-1)/N``, seeded with the
simple mean of the first ``N`` changes, has the closed form

    avg_i = (1/N) * sum_(j <= i) r^(i - e_j) * x_j,   e_j = max(j, N)

(the first ``N`` changes all enter at index ``N`` with weight 1, which is the seed). DuckDB has
no scan/fold window, and a recursive CTE would take one iteration per day, so the closed form is
evaluated with window sums instead. To keep ``r^-j`` from overflowing, the exponent is taken
relative to the start of a block of ``BLOCK`` sessions and only the current and the previous
block are summed: an older change has weight at most ``r^(BLOCK+1)`` (about 1e-33 for
``BLOCK = 1024``), far below double precision, so the result equals the recursion to rounding.
"""

from __future__ import annotations

RSI_PERIOD = 14
VOLATILITY_DAYS = 7
TRADING_DAYS_PER_YEAR = 252
BLOCK = 1024


def session_ctes(instants: str, rsi_period: int = RSI_PERIOD, vol_days: int = VOLATILITY_DAYS) -> str:
    """SQL CTEs (to follow ``WITH``) ending in ``session_ctx`` from the CTE named ``instants``.

    ``instants`` must have one row per ``(code, us)`` with columns ``code, us, day, price``,
    where ``day`` is the session number. ``session_ctx`` has one row per ``(code, day)`` with
    ``i`` (0-based session index), ``prev_close``, ``prev_gain``/``prev_loss`` (generalised
    Wilder state after the previous close, see module docstring) and ``n_ret``, ``mean_ret``,
    ``m2_ret`` (count, mean and sum of squared deviations of the completed daily log returns of
    sessions ``day - vol_days + 1 .. day - 1``).
    """
    n = rsi_period
    r = (n - 1) / n
    return f"""
closes AS (
    SELECT code, day, arg_max(price, us) AS close,
           row_number() OVER (PARTITION BY code ORDER BY day) - 1 AS i
    FROM {instants}
    GROUP BY code, day
),
moves AS (
    SELECT *,
           coalesce(close - lag(close) OVER w, 0) AS chg,
           ln(close / lag(close) OVER w) AS logret,
           i // {BLOCK} AS blk
    FROM closes
    WINDOW w AS (PARTITION BY code ORDER BY i)
),
scaled AS (
    -- change j weighted by r^(block_start - e_j), e_j = max(j, N)
    SELECT *,
           greatest(chg, 0) * pow({r!r}, blk * {BLOCK} - greatest(i, {n})) AS g_term,
           greatest(-chg, 0) * pow({r!r}, blk * {BLOCK} - greatest(i, {n})) AS l_term
    FROM moves
),
block_totals AS (
    SELECT code, blk, sum(g_term) AS g_tot, sum(l_term) AS l_tot
    FROM scaled
    GROUP BY code, blk
),
wilder AS (
    SELECT s.code, s.day, s.i, s.close, s.logret,
           pow({r!r}, s.i - s.blk * {BLOCK}) / {n}
               * (pow({r!r}, {BLOCK}) * coalesce(b.g_tot, 0) + sum(s.g_term) OVER wb) AS p_gain,
           pow({r!r}, s.i - s.blk * {BLOCK}) / {n}
               * (pow({r!r}, {BLOCK}) * coalesce(b.l_tot, 0) + sum(s.l_term) OVER wb) AS p_loss
    FROM scaled AS s
    LEFT JOIN block_totals AS b ON b.code = s.code AND b.blk = s.blk - 1
    WINDOW wb AS (PARTITION BY s.code, s.blk ORDER BY s.i ROWS UNBOUNDED PRECEDING)
),
{_context_cte(vol_days)}"""


def _context_cte(vol_days: int) -> str:
    """The ``session_ctx`` CTE: each session's view of the state before it opens."""
    return f"""
session_ctx AS (
    SELECT code, day, i,
           lag(close) OVER w AS prev_close,
           lag(p_gain) OVER w AS prev_gain,
           lag(p_loss) OVER w AS prev_loss,
           count(logret) OVER wv AS n_ret,
           avg(logret) OVER wv AS mean_ret,
           coalesce(var_pop(logret) OVER wv * count(logret) OVER wv, 0) AS m2_ret
    FROM wilder
    WINDOW w AS (PARTITION BY code ORDER BY i),
           wv AS (PARTITION BY code ORDER BY day
                  RANGE BETWEEN {vol_days - 1} PRECEDING AND 1 PRECEDING)
)"""


def rsi_expr(tick: str, ctx: str, rsi_period: int = RSI_PERIOD) -> str:
    """SQL for Wilder's RSI of a tick: one smoothing step from the previous session's state.

    The tick's price is its session's provisional close; ``k = i`` completed closes precede it
    and the RSI needs ``N + 1`` closes, hence ``i >= N``. A flat window (no gains nor losses)
    has no defined RSI and gives NULL.
    """
    n = rsi_period
    r = (n - 1) / n
    gain = f"({r!r} * {ctx}.prev_gain + greatest({tick}.price - {ctx}.prev_close, 0) / {n})"
    loss = f"({r!r} * {ctx}.prev_loss + greatest({ctx}.prev_close - {tick}.price, 0) / {n})"
    return f"CASE WHEN {ctx}.i >= {n} AND {gain} + {loss} > 0 THEN 100 * {gain} / ({gain} + {loss}) END"


def volatility_expr(tick: str, ctx: str) -> str:
    """SQL for the annualised volatility (%) of a tick's session window.

    The completed returns' moments are combined with the tick's provisional return
    ``ln(price / prev_close)`` by Welford's update, which avoids the cancellation of the
    sum-of-squares formula.
    """
    ret = f"ln({tick}.price / {ctx}.prev_close)"
    n1 = f"({ctx}.n_ret + 1)"
    mean = f"coalesce({ctx}.mean_ret, {ret})"
    mean1 = f"(({ctx}.n_ret * coalesce({ctx}.mean_ret, 0) + {ret}) / {n1})"
    m2 = f"({ctx}.m2_ret + ({ret} - {mean}) * ({ret} - {mean1}))"
    return (
        f"CASE WHEN {ctx}.prev_close IS NOT NULL AND {n1} >= 2 "
        f"THEN 100 * sqrt(greatest({m2}, 0) / ({n1} - 1) * {TRADING_DAYS_PER_YEAR}) END"
    )
