"""The shared distance x angle heatmap: cell means against a pandas-free groupby, and a decodable PNG."""
import io

import numpy as np
from PIL import Image

from physadv.core.plots import grid_means, heatmap_png


def test_grid_means_average_each_cell_and_leave_empty_cells_nan():
    rng = np.random.default_rng(0)
    items = [(float(d), float(a), float(v)) for d, a, v in zip(rng.choice([5, 10, 20], 200), rng.choice([0, 30], 200), rng.random(200))]
    items = [x for x in items if not (x[0] == 20 and x[1] == 30)]  # one empty cell
    rows, cols, grid = grid_means(items, lambda x: x[0], lambda x: x[1], lambda x: x[2])
    assert rows == [5.0, 10.0, 20.0] and cols == [0.0, 30.0]
    for i, d in enumerate(rows):
        for j, a in enumerate(cols):
            vals = [v for dd, aa, v in items if dd == d and aa == a]
            assert np.isnan(grid[i, j]) if not vals else np.isclose(grid[i, j], np.mean(vals))
    assert np.isnan(grid[2, 1])


def test_heatmap_png_decodes():
    grid = np.array([[1.0, 0.5], [np.nan, 0.0]])
    img = Image.open(io.BytesIO(heatmap_png(grid, [5, 10], [0, 30], "ft", "success")))
    assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 100
