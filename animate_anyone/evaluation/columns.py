"""The leaderboard's columns: which metrics, which way is better, their labels (light: the
command line prints them without loading the evaluation)."""

# (metric, higher is better, label); shown when some evaluation of the bench has it
COLUMNS = [("psnr", True, "PSNR dB"), ("ssim", True, "SSIM"), ("l1", False, "L1"), ("lpips", False, "LPIPS"),
           ("pck10_body", True, "PCK@0.1 body"), ("pck10_body_moved", True, "PCK@0.1 body, moved frames"),
           ("pck10_body_moving", True, "PCK@0.1 moving body points"),
           ("pck10_hands_moving", True, "PCK@0.1 moving hand points"),
           ("pck05_body", True, "PCK@0.05 body"), ("pck10_hands", True, "PCK@0.1 hands"),
           ("pck10_face", True, "PCK@0.1 face"), ("person", True, "person found"),
           ("person_moved", True, "person, moved"),
           ("appearance_real", False, "colour ΔE00 to the real person"),
           ("appearance_reference", False, "colour ΔE00 to the reference's person"), ("identity", True, "identity"), ("fid", False, "FID"),
           ("fvd", False, "FVD")]
TERMINAL = ("psnr", "ssim", "lpips", "pck10_body", "pck10_body_moving", "pck10_hands_moving", "person",
            "appearance_real",
            "identity", "fid", "fvd")  # what the command line prints; the markdown has them all
KIND_ORDER = {"model": 0, "checkpoint": 1, "baseline": 2}
