"""Tiny dependency grids for the tests that run `rnnfast run grid`: 4000 / (20 * 5) = 40
updates an epoch, milliseconds a run once the kernels are compiled."""

TINY_DEPENDENCY = """sequence_length = 4000
batch_size = 20
num_steps = 5
"""


def dependency_grid(name: str, fixed: str = "", grid: str | None = "seed = [0, 1]") -> str:
    """A grid file's text: TINY_DEPENDENCY plus `fixed` (TOML lines) in [fixed], and `grid`
    (TOML lines, None: no [grid] section)."""
    text = f'name = "{name}"\ntask = "dependency"\n[fixed]\n{TINY_DEPENDENCY}{fixed}\n'
    return text + (f"[grid]\n{grid}\n" if grid is not None else "")
