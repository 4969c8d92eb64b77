"""The MPLMM paper's printed figures (Guo, Jin, Zhao, ACL 2024, arXiv 2407.05374).

Copied as printed, to be shown *beside* promptkit's measured figures and always labelled as the
paper's figures on the paper's data sets (CMU-MOSI etc.), never as promptkit results.
"""

from __future__ import annotations

SOURCE = "MPLMM paper (Guo, Jin, Zhao, ACL 2024), as printed"

# Table 1: (acc, f1) per available-modality case, CMU-MOSI; {a} = only audio available.
TABLE1_CASES: tuple[str, ...] = ("{a}", "{v}", "{t}", "{a,v}", "{a,t}", "{t,v}", "avg")
TABLE1_MOSI: dict[str, list[tuple[float, float]]] = {
    "LB": [(48.32, 55.81), (49.09, 55.20), (79.27, 79.22), (50.07, 57.12), (78.67, 79.25), (79.86, 79.96), (64.21, 67.76)],
    "MPMM": [(57.26, 59.35), (58.63, 59.12), (79.81, 80.10), (60.54, 61.33), (79.89, 79.84), (80.74, 80.93), (69.48, 70.11)],
    "Ours": [(62.71, 63.65), (63.12, 63.74), (80.12, 80.31), (65.02, 65.41), (80.76, 81.09), (81.12, 81.19), (72.14, 72.57)],
}

# Table 2: CMU-MOSI binary accuracy. com = complete test data, incom = average over the six
# missing cases; "prompted" = with prompts attached to the frozen backbone.
TABLE2_COLUMNS: tuple[str, ...] = ("com", "com_prompted", "incom", "incom_prompted")
TABLE2_MOSI_ACC2: dict[str, tuple[float, float, float, float]] = {
    "misa": (80.8, 81.4, 67.9, 73.4),
    "mmim": (84.1, 84.9, 68.6, 72.3),
    "unimse": (86.9, 87.4, 69.8, 75.1),
}

# Table 3 (ablation), CMU-MOSI columns: (PG, PMS, PMT) -> (acc7, acc2, f1, mae, corr), averages
# over the six missing cases.
TABLE3_MOSI: dict[tuple[int, int, int], tuple[float, float, float, float, float]] = {
    (0, 0, 0): (27.41, 65.04, 68.08, 1.121, 0.549),
    (1, 0, 0): (28.27, 70.26, 71.33, 1.097, 0.574),
    (0, 1, 0): (28.11, 67.62, 69.40, 1.104, 0.580),
    (0, 0, 1): (30.17, 66.41, 69.21, 1.167, 0.561),
    (1, 1, 0): (30.63, 71.94, 72.10, 1.084, 0.576),
    (1, 0, 1): (31.27, 71.60, 71.86, 1.075, 0.583),
    (0, 1, 1): (32.88, 67.56, 69.31, 1.091, 0.593),
}

TRAINING_SETUP = {"optimizer": "Adam", "lr": 1e-3, "batch_size": 64, "epochs": 30, "eta": 0.7, "prompt_length": 16}
