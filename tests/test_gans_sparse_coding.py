"""The deconvolutional data model of Papyan et al. 2016: thresholding == a ReLU CNN; pursuits recover supports."""
import torch
import torch.nn.functional as F

from physadv.gans.sparse_coding import (DeconvolutionalModel, SparseCodingConfig, analyze, as_cnn, basis_pursuit, layered_basis_pursuit,
                                layered_thresholding, mutual_coherence, support_jaccard, synthesize)


def small_cfg(**kw) -> SparseCodingConfig:
    return SparseCodingConfig(**{"signal_size": 48, "nonzeros2": 2, "n_signals": 6, "bp_iters": 60, "candidates": 20, **kw})


def test_analysis_is_the_adjoint_of_synthesis():
    g = torch.Generator().manual_seed(0)
    D = torch.randn(5, 2, 4, 4, generator=g, dtype=torch.float64)
    codes = torch.randn(3, 5, 9, 9, generator=g, dtype=torch.float64)
    x = torch.randn(3, 2, 12, 12, generator=g, dtype=torch.float64)
    assert torch.allclose((synthesize(codes, D) * x).sum(), (codes * analyze(x, D)).sum())


def test_layered_thresholding_is_the_forward_pass_of_a_relu_cnn():
    g = torch.Generator().manual_seed(1)
    D1, D2 = torch.randn(6, 3, 5, 5, generator=g), torch.randn(8, 6, 3, 3, generator=g)
    b1, b2 = 0.3, 0.7
    x = torch.randn(2, 3, 20, 20, generator=g)
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 5), torch.nn.ReLU(), torch.nn.Conv2d(6, 8, 3), torch.nn.ReLU())
    with torch.no_grad():
        cnn[0].weight.copy_(D1), cnn[0].bias.fill_(-b1), cnn[2].weight.copy_(D2), cnn[2].bias.fill_(-b2)
    codes = layered_thresholding(x, [D1, D2], [b1, b2])
    assert torch.allclose(codes[1], cnn(x), atol=1e-5)
    assert torch.allclose(codes[0], F.relu(cnn[0](x)), atol=1e-5)
    assert torch.allclose(as_cnn([D1, D2], [b1, b2])(x), cnn(x), atol=1e-5)


def test_coherence_of_orthogonal_atoms_and_of_a_shifted_copy():
    D = torch.zeros(2, 1, 3, 3)
    D[0, 0, 1, 1] = 1
    D[1, 0, 0, 0] = 1  # a shift of atom 0: coherence 1
    assert mutual_coherence(D) == 1.0
    D[1, 0, 0, 0], D[1, 0, 1, 1] = 0, 0
    D[1, 0] = torch.tensor([[1.0, -1, 0], [0, 0, 0], [0, 0, 0]]) / 2 ** 0.5
    assert abs(mutual_coherence(D) - 2 ** -0.5) < 1e-6


def test_basis_pursuit_meets_the_nonnegative_lasso_optimality_conditions():
    g = torch.Generator().manual_seed(2)
    D = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    D = D / D.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    y = torch.randn(1, 1, 12, 12, generator=g, dtype=torch.float64)
    lam = 0.3
    G = basis_pursuit(y, D, lam, iters=3000)
    grad = analyze(y - synthesize(G, D), D)  # KKT: grad <= lam everywhere, == lam on the support, G >= 0
    assert (G >= 0).all() and G.gt(0).any()
    assert grad.max() <= lam + 1e-6
    assert torch.allclose(grad[G > 1e-8], torch.full_like(grad[G > 1e-8], lam), atol=1e-5)


def test_thresholding_is_exact_without_noise_and_bp_is_no_worse_with_noise():
    cfg = small_cfg()
    model = DeconvolutionalModel.random(cfg)
    b = list(model.thresholds())
    x, g1, g2 = model.sample(cfg.n_signals, torch.Generator().manual_seed(3))
    th = layered_thresholding(x, [model.D1, model.D2], b)
    assert (support_jaccard(th[0], g1) == 1).all() and (support_jaccard(th[1], g2) == 1).all()
    y = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    th = layered_thresholding(y, [model.D1, model.D2], b)
    bp = layered_basis_pursuit(y, [model.D1, model.D2], b, cfg.bp_iters)
    for k, true in enumerate((g1, g2)):
        assert support_jaccard(bp[k], true).mean() >= support_jaccard(th[k], true).mean()
