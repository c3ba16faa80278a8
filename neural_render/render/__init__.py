"""Pure rendering functions: env maps, rotations, BRDF, split-sum shading, tone mapping. No nn.Module, no state."""
