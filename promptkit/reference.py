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
    "MS": [(49.17, 55.34), (49.87, 56.12), (78.06, 78.28), (51.12, 57.01), (79.32, 79.65), (80.32, 80.38), (64.64, 67.80)],
    "MD": [(48.79, 55.74), (49.66, 55.60), (79.36, 80.01), (52.33, 56.84), (79.59, 79.86), (80.51, 80.43), (65.04, 68.08)],
    "MCTN": [(51.32, 56.12), (54.27, 56.33), (79.63, 79.78), (56.79, 57.84), (78.96, 79.17), (80.45, 80.65), (66.90, 68.32)],
    "MMIN": [(59.16, 60.12), (61.01, 61.98), (80.10, 80.16), (63.79, 64.08), (80.50, 80.33), (80.46, 80.63), (70.84, 71.22)],
    "MPMM": [(57.26, 59.35), (58.63, 59.12), (79.81, 80.10), (60.54, 61.33), (79.89, 79.84), (80.74, 80.93), (69.48, 70.11)],
    "Ours": [(62.71, 63.65), (63.12, 63.74), (80.12, 80.31), (65.02, 65.41), (80.76, 81.09), (81.12, 81.19), (72.14, 72.57)],
}

# Table 1's IEMOCAP and CH-SIMS columns, same layout (IEMOCAP's MCTN and MMIN rows were copied by the
# paper from the MMIN paper, without F1: None).
TABLE1_IEMOCAP: dict[str, list[tuple[float, float | None]]] = {
    "LB": [(46.35, 46.21), (48.07, 47.58), (56.06, 55.28), (58.12, 57.89), (72.18, 72.25), (65.63, 65.28), (57.74, 57.42)],
    "MS": [(47.65, 47.52), (47.68, 47.36), (59.27, 59.22), (57.48, 56.6), (72.3, 72.18), (66.81, 66.93), (58.53, 58.3)],
    "MD": [(48.22, 48.09), (48.26, 47.98), (61.26, 61.28), (58.08, 57.96), (72.4, 72.31), (67.08, 68.22), (59.22, 59.31)],
    "MCTN": [(51.62, None), (45.73, None), (63.78, None), (55.84, None), (69.46, None), (68.34, None), (59.19, None)],
    "MMIN": [(59.0, None), (51.6, None), (68.02, None), (65.43, None), (75.14, None), (73.61, None), (65.47, None)],
    "MPMM": [(58.69, 57.66), (55.18, 55.36), (68.39, 68.08), (63.68, 63.47), (74.9, 74.98), (73.8, 72.67), (65.77, 65.37)],
    "Ours": [(59.77, 59.71), (57.61, 56.98), (69.23, 69.28), (67.26, 67.37), (75.98, 75.44), (74.68, 74.51), (67.42, 67.22)],
}
TABLE1_SIMS: dict[str, list[tuple[float, float | None]]] = {
    "LB": [(63.82, 75.15), (64.08, 78.11), (76.74, 76.9), (62.14, 73.21), (76.84, 76.93), (77.01, 77.13), (70.11, 76.24)],
    "MS": [(62.45, 74.59), (63.58, 76.86), (77.28, 77.84), (60.18, 71.09), (76.01, 76.3), (77.13, 77.2), (69.44, 75.65)],
    "MD": [(64.22, 77.25), (63.87, 76.01), (77.34, 77.48), (62.91, 72.14), (76.77, 76.92), (77.14, 77.31), (70.38, 76.19)],
    "MCTN": [(64.39, 76.48), (64.12, 76.34), (77.78, 77.92), (63.47, 73.11), (76.68, 76.71), (77.21, 77.36), (70.61, 76.32)],
    "MMIN": [(65.21, 77.09), (65.32, 77.41), (78.91, 78.67), (64.28, 73.36), (77.32, 77.33), (77.4, 77.48), (71.41, 76.89)],
    "MPMM": [(64.98, 76.41), (65.4, 77.92), (78.56, 78.65), (64.01, 73.47), (77.11, 77.2), (77.51, 77.47), (71.26, 76.85)],
    "Ours": [(65.93, 77.1), (66.02, 78.86), (79.75, 78.74), (65.28, 74.02), (77.45, 77.84), (77.97, 77.95), (72.07, 77.42)],
}

# Table 2: CMU-MOSI binary accuracy per backbone, columns (com, com_prompted, incom, incom_prompted):
# com = complete test data, incom = average over the six missing cases; "prompted" = with prompts
# attached to the frozen backbone.
TABLE2_MOSI_ACC2: dict[str, tuple[float, float, float, float]] = {
    "misa": (80.8, 81.4, 67.9, 73.4),
    "mmim": (84.1, 84.9, 68.6, 72.3),
    "unimse": (86.9, 87.4, 69.8, 75.1),
}

# Table 3: the prompt-type ablation, averages over the six missing cases on CMU-MOSI.
# Key (PG, PMS, PMT) on/off -> (acc7, acc, f1, mae, corr); the all-off row equals the paper's MD.
# The full method (1, 1, 1) is not a row of Table 3; its acc/F1 are Table 1's "Ours" average.
TABLE3_COLUMNS: tuple[str, ...] = ("acc7", "acc", "f1", "mae", "corr")
TABLE3_MOSI: dict[tuple[int, int, int], tuple[float, ...]] = {
    (0, 0, 0): (27.41, 65.04, 68.08, 1.121, 0.549),
    (1, 0, 0): (28.27, 70.26, 71.33, 1.097, 0.574),
    (0, 1, 0): (28.11, 67.62, 69.40, 1.104, 0.580),
    (0, 0, 1): (30.17, 66.41, 69.21, 1.167, 0.561),
    (1, 1, 0): (30.63, 71.94, 72.10, 1.084, 0.576),
    (1, 0, 1): (31.27, 71.60, 71.86, 1.075, 0.583),
    (0, 1, 1): (32.88, 67.56, 69.31, 1.091, 0.593),
}

# Figures 6 and 7: where the paper's curves peak (CMU-MOSI).
FIG6_BEST_ETA = 0.7
FIG7_BEST_PROMPT_LENGTH = 16
