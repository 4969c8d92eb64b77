"""Evaluation: the missing-modality protocol, paired comparisons between models, and reports.

* :mod:`.protocol` - fixed cases and the seeded missing-rate sweep (:func:`evaluate_protocol`).
* :mod:`.paired` - per-sample paired differences on identical masks, summaries over seeds, headroom.
* :mod:`.report` - rich tables, JSON/CSV files and PNG plots.
"""

from .paired import (
    PairedDifference,
    achievable_se,
    check_precision,
    compare_protocols,
    headroom,
    paired_difference,
    per_sample_correct,
    share_recovered,
    summarize_over_seeds,
)
from .protocol import (
    AVG,
    COMPLETE,
    DEFAULT_RATES,
    Forward,
    ProtocolResult,
    evaluate_masks,
    evaluate_protocol,
    predict_masks,
    prompted_forward,
    protocol_masks,
    rate_key,
    zero_filled_forward,
)
from .report import (
    case_columns,
    paired_rows,
    paired_to_csv,
    plot_paired,
    plot_rate_sweep,
    print_paired,
    print_rate_sweep,
    print_table1,
    rows_to_csv,
    save_paired_results,
    save_protocol_results,
    table1_columns,
    table1_rows,
)

__all__ = [
    "AVG",
    "COMPLETE",
    "DEFAULT_RATES",
    "Forward",
    "PairedDifference",
    "ProtocolResult",
    "achievable_se",
    "case_columns",
    "check_precision",
    "compare_protocols",
    "evaluate_masks",
    "evaluate_protocol",
    "headroom",
    "paired_difference",
    "paired_rows",
    "paired_to_csv",
    "per_sample_correct",
    "plot_paired",
    "plot_rate_sweep",
    "predict_masks",
    "print_paired",
    "print_rate_sweep",
    "print_table1",
    "prompted_forward",
    "protocol_masks",
    "rate_key",
    "rows_to_csv",
    "save_paired_results",
    "save_protocol_results",
    "share_recovered",
    "summarize_over_seeds",
    "table1_columns",
    "table1_rows",
    "zero_filled_forward",
]
