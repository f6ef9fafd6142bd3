"""Lens distortion models of ROS `CameraInfo` / OpenCV, on normalised image coordinates.

A camera-frame point (x, y, z), z > 0, has normalised coordinates (a, b) = (x / z, y / z);
a distortion model maps them to distorted normalised coordinates (a', b'), and the pixel is
(u, v) = (fx a' + cx, fy b' + cy). With r^2 = a^2 + b^2:

- "plumb_bob" (k1, k2, p1, p2, k3) and "rational_polynomial" (k1, k2, p1, p2, k3, k4, k5,
  k6): OpenCV's `projectPoints` model,
  a' = a s + 2 p1 a b + p2 (r^2 + 2 a^2), b' = b s + p1 (r^2 + 2 b^2) + 2 p2 a b,
  s = (1 + k1 r^2 + k2 r^4 + k3 r^6) / (1 + k4 r^2 + k5 r^4 + k6 r^6).
- "equidistant" (k1, k2, k3, k4): OpenCV's `fisheye` model, theta = atan(r),
  theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8),
  (a', b') = (theta_d / r) (a, b).

`undistort` inverts `distort` by Newton's method, in float64.
"""

from __future__ import annotations

import torch

__all__ = ["DISTORTION_MODELS", "check_distortion", "distort", "undistort"]

# Number of coefficients of each model, in ROS `CameraInfo.D` order (OpenCV's order too).
DISTORTION_MODELS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}


def check_distortion(distortion, distortion_model: str) -> tuple[float, ...]:
    """Check distortion coefficients against their model and return them as floats.

    Args:
        distortion: sequence of coefficients, ROS `CameraInfo.D` order; empty = none.
        distortion_model: "plumb_bob", "rational_polynomial" or "equidistant".

    Returns:
        coefficients: tuple of Python floats (empty for no distortion).

    Raises:
        ValueError: on an unknown model, a coefficient count other than the model's, or
            non-finite coefficients.
    """
    if distortion_model not in DISTORTION_MODELS:
        raise ValueError(f"distortion_model must be one of {sorted(DISTORTION_MODELS)}, got {distortion_model!r}")
    coefficients = tuple(float(value) for value in distortion)
    expected = DISTORTION_MODELS[distortion_model]
    if coefficients and len(coefficients) != expected:
        raise ValueError(
            f"distortion for distortion_model={distortion_model!r} must have {expected} coefficients "
            f"(ROS CameraInfo.D order), got {len(coefficients)}"
        )
    if not all(abs(value) < float("inf") for value in coefficients):  # NaN fails < inf
        raise ValueError(f"distortion coefficients must be finite, got {coefficients}")
    return coefficients


def distort(
    a: torch.Tensor, b: torch.Tensor, coefficients: tuple[float, ...], model: str, r2: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distorted normalised coordinates (a', b') of undistorted ones (a, b), any shape, float.

    `r2` = a^2 + b^2 when the caller has it. In-place steps on a few buffers: each step
    is a pass over memory, and a projection runs this on every point of a scan.
    """
    if r2 is None:
        r2 = (a * a).addcmul_(b, b)
    if model == "equidistant":
        k1, k2, k3, k4 = coefficients
        r = torch.sqrt(r2)
        theta = torch.atan(r)
        theta2 = theta * theta
        scale = (theta2 * k4).add_(k3).mul_(theta2).add_(k2).mul_(theta2).add_(k1).mul_(theta2).add_(1).mul_(theta)
        # theta_d / r -> 1 as r -> 0 (theta ~ r): the optical axis stays put.
        scale = torch.where(r > 1e-12, scale.div_(r.clamp_min_(1e-12)), 1.0)
        return a * scale, b * scale
    k1, k2, p1, p2, k3 = coefficients[:5]
    radial = (r2 * k3).add_(k2).mul_(r2).add_(k1).mul_(r2).add_(1)
    if model == "rational_polynomial":
        k4, k5, k6 = coefficients[5:]
        radial.div_((r2 * k6).add_(k5).mul_(r2).add_(k4).mul_(r2).add_(1))
    a_out, b_out = a * radial, b * radial
    if p1 or p2:
        ab2 = (a * b).mul_(2)
        # a' += p1 2ab + p2 (r^2 + 2 a^2); b' += p1 (r^2 + 2 b^2) + p2 2ab.
        a_out.add_(ab2, alpha=p1).add_(r2, alpha=p2).addcmul_(a, a, value=2 * p2)
        b_out.add_(ab2, alpha=p2).add_(r2, alpha=p1).addcmul_(b, b, value=2 * p1)
    return a_out, b_out


def undistort(
    a_distorted: torch.Tensor,
    b_distorted: torch.Tensor,
    coefficients: tuple[float, ...],
    model: str,
    iterations: int = 20,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Invert `distort` by Newton's method with the analytic Jacobian, in float64.

    Each step works on the points not yet converged only, so a whole image of rays costs
    a few full passes.

    Args:
        a_distorted: (...) distorted normalised x.
        b_distorted: (...) distorted normalised y.
        coefficients: the model's coefficients (see `check_distortion`).
        model: the distortion model.
        iterations: Newton steps at most.

    Returns:
        (a, b, converged): float64 undistorted coordinates of the input's shape and a bool
        mask; where the model cannot be inverted (the ray would lie beyond the range where
        the model is monotone, or behind the camera) converged is False.
    """
    shape = a_distorted.shape
    target_a = a_distorted.to(torch.float64).reshape(-1)
    target_b = b_distorted.to(torch.float64).reshape(-1)
    if model == "equidistant":
        a, b, converged = _undistort_equidistant(target_a, target_b, coefficients, iterations)
        return a.view(shape), b.view(shape), converged.view(shape)
    a, b = target_a.clone(), target_b.clone()
    active = torch.arange(a.shape[0], device=a.device)
    for _ in range(iterations):
        part_a, part_b = a.index_select(0, active), b.index_select(0, active)
        fa, fb, j11, j12, j21, j22 = _distort_with_jacobian(part_a, part_b, coefficients)
        ra, rb = fa - target_a.index_select(0, active), fb - target_b.index_select(0, active)
        determinant = j11 * j22 - j12 * j21
        step_a = (j22 * ra - j12 * rb) / determinant
        step_b = (j11 * rb - j21 * ra) / determinant
        a.index_copy_(0, active, part_a - step_a)
        b.index_copy_(0, active, part_b - step_b)
        # Keep iterating where the step is still above rounding (NaN steps stop: they failed).
        moving = torch.maximum(step_a.abs(), step_b.abs()) > 1e-15 * (1 + part_a.abs() + part_b.abs())
        active = active[moving]
        if active.shape[0] == 0:
            break
    fa, fb, j11, j12, j21, j22 = _distort_with_jacobian(a, b, coefficients)
    # A positive Jacobian determinant: the solution lies where the model is still monotone,
    # not on a branch where the polynomial folds back into the image.
    converged = ((fa - target_a).abs() < 1e-9) & ((fb - target_b).abs() < 1e-9) & (j11 * j22 - j12 * j21 > 0)
    return a.view(shape), b.view(shape), converged.view(shape)


def _distort_with_jacobian(a: torch.Tensor, b: torch.Tensor, coefficients: tuple[float, ...]):
    """(a', b', d a'/d a, d a'/d b, d b'/d a, d b'/d b) of the plumb_bob / rational model."""
    k1, k2, p1, p2, k3 = coefficients[:5]
    k4, k5, k6 = coefficients[5:] if len(coefficients) == 8 else (0.0, 0.0, 0.0)
    r2 = a * a + b * b
    numerator = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    denominator = 1 + r2 * (k4 + r2 * (k5 + r2 * k6))
    radial = numerator / denominator
    # d radial / d r^2 by the quotient rule.
    radial_slope = ((k1 + r2 * (2 * k2 + 3 * k3 * r2)) - radial * (k4 + r2 * (2 * k5 + 3 * k6 * r2))) / denominator
    ab = a * b
    a_out = a * radial + 2 * p1 * ab + p2 * (r2 + 2 * a * a)
    b_out = b * radial + p1 * (r2 + 2 * b * b) + 2 * p2 * ab
    cross = 2 * ab * radial_slope + 2 * p1 * a + 2 * p2 * b
    return (
        a_out,
        b_out,
        radial + 2 * a * a * radial_slope + 2 * p1 * b + 6 * p2 * a,
        cross,
        cross,
        radial + 2 * b * b * radial_slope + 6 * p1 * b + 2 * p2 * a,
    )


def _undistort_equidistant(target_a, target_b, coefficients, iterations):
    """The fisheye model is radial: solve theta_d(theta) = |(a', b')| for theta, r = tan(theta)."""
    k1, k2, k3, k4 = coefficients
    theta_d = torch.sqrt(target_a * target_a + target_b * target_b)
    theta = theta_d.clone()
    for _ in range(iterations):
        t2 = theta * theta
        value = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))) - theta_d
        slope = 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + t2 * 9 * k4)))
        step = value / slope
        theta = theta - step
        if not bool((step.abs() > 1e-15).any()):
            break
    t2 = theta * theta
    residual = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))) - theta_d
    slope = 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + t2 * 9 * k4)))
    converged = (residual.abs() < 1e-9) & (slope > 0) & (theta >= 0) & (theta < torch.pi / 2)
    # theta_d / r -> 1 on the optical axis.
    scale = torch.where(theta_d > 1e-12, torch.tan(theta) / theta_d.clamp_min(1e-12), torch.ones_like(theta))
    return target_a * scale, target_b * scale, converged
