/*
 * bandit_linalg.c — the linear algebra of the contextual bandit, over small
 * dense matrices (d <= BANDIT_MAX_DIM, row-major).
 *
 * Model: ridge regression of the reward on the context vector x.  A state
 * holds the sufficient statistics A = lambda I + sum x x' and b = sum r x
 * and the lower Cholesky factor L of A (A = L L').  theta = A^-1 b and the
 * uncertainty x' A^-1 x = |L^-1 x|^2 come from triangular solves, O(d^2),
 * never from an explicit inverse stored in a state; serving derives A^-1
 * from L once per call (BanditAddInverse) and then costs each candidate
 * only the products of its non-zero entries (BanditSparseDot, in bandit.h,
 * and BanditSparseQuad).  Posterior draws for Thompson sampling are
 * theta + v L^-T z with z standard normal (BanditDrawTheta).
 *
 * No state and no SQL here: bandit_state.c applies updates and stores
 * states, policy.c ranks with them.
 */
#include "postgres.h"

#include <math.h>

#include "bandit.h"

/* Lower Cholesky factor of a symmetric positive definite A; false if not SPD. */
bool
BanditCholesky(const double *A, double *L, int d)
{
	int			i,
				j,
				k;

	memset(L, 0, sizeof(double) * d * d);
	for (j = 0; j < d; j++)
	{
		double		s = A[j * d + j];

		for (k = 0; k < j; k++)
			s -= L[j * d + k] * L[j * d + k];
		if (!(s > 0.0) || !isfinite(s))
			return false;
		L[j * d + j] = sqrt(s);
		for (i = j + 1; i < d; i++)
		{
			double		t = A[i * d + j];

			for (k = 0; k < j; k++)
				t -= L[i * d + k] * L[j * d + k];
			L[i * d + j] = t / L[j * d + j];
		}
	}
	return true;
}

/* Rank-1 update in place: L L' <- L L' + x x'. */
void
BanditCholUpdate(double *L, const double *x, int d)
{
	double		w[BANDIT_MAX_DIM];
	int			i,
				k;

	memcpy(w, x, sizeof(double) * d);
	for (k = 0; k < d; k++)
	{
		double		lkk = L[k * d + k];
		double		r = sqrt(lkk * lkk + w[k] * w[k]);
		double		c = r / lkk;
		double		s = w[k] / lkk;

		L[k * d + k] = r;
		for (i = k + 1; i < d; i++)
		{
			L[i * d + k] = (L[i * d + k] + s * w[i]) / c;
			w[i] = c * w[i] - s * L[i * d + k];
		}
	}
}

/* Solve L out = rhs (forward substitution). */
void
BanditForwardSolve(const double *L, const double *rhs, double *out, int d)
{
	int			i,
				k;

	for (i = 0; i < d; i++)
	{
		double		s = rhs[i];

		for (k = 0; k < i; k++)
			s -= L[i * d + k] * out[k];
		out[i] = s / L[i * d + i];
	}
}

/* Solve L' out = rhs (back substitution). */
void
BanditBackSolve(const double *L, const double *rhs, double *out, int d)
{
	int			i,
				k;

	for (i = d - 1; i >= 0; i--)
	{
		double		s = rhs[i];

		for (k = i + 1; k < d; k++)
			s -= L[k * d + i] * out[k];
		out[i] = s / L[i * d + i];
	}
}

/* Solve A out = rhs with A = L L'. */
void
BanditSolve(const double *L, const double *rhs, double *out, int d)
{
	double		z[BANDIT_MAX_DIM];

	BanditForwardSolve(L, rhs, z, d);
	BanditBackSolve(L, z, out, d);
}

/*
 * A^-1 = L^-T L^-1 from the Cholesky factor (d x d, row-major), added to
 * out with weight w: for serving, where every candidate's x' A^-1 x then
 * costs only the products of its non-zero entries.
 */
void
BanditAddInverse(const double *L, int d, double w, double *out)
{
	double		linv[BANDIT_MAX_DIM * BANDIT_MAX_DIM];
	int			i,
				j,
				k;

	/* column j of L^-1 by forward substitution (zero above the diagonal) */
	memset(linv, 0, sizeof(double) * d * d);
	for (j = 0; j < d; j++)
	{
		linv[j * d + j] = 1.0 / L[j * d + j];
		for (i = j + 1; i < d; i++)
		{
			double		s = 0.0;

			for (k = j; k < i; k++)
				s += L[i * d + k] * linv[k * d + j];
			linv[i * d + j] = -s / L[i * d + i];
		}
	}
	/* (L^-T L^-1)_ij = sum over r >= max(i, j) of linv_ri linv_rj */
	for (i = 0; i < d; i++)
		for (j = 0; j <= i; j++)
		{
			double		s = 0.0;

			for (k = i; k < d; k++)
				s += linv[k * d + i] * linv[k * d + j];
			out[i * d + j] += w * s;
			if (j != i)
				out[j * d + i] += w * s;
		}
}

/*
 * n independent standard normal draws into out (Marsaglia's polar method:
 * two draws per accepted point of the unit disc, no trigonometry).
 */
void
BanditNormals(pg_prng_state *rng, double *out, int n)
{
	int			i = 0;

	while (i < n)
	{
		double		u = 2.0 * pg_prng_double(rng) - 1.0;
		double		v = 2.0 * pg_prng_double(rng) - 1.0;
		double		s = u * u + v * v;
		double		f;

		if (s >= 1.0 || s == 0.0)
			continue;
		f = sqrt(-2.0 * log(s) / s);
		out[i++] = u * f;
		if (i < n)
			out[i++] = v * f;
	}
}

/* theta~ = theta + v L^-T z: a draw from N(theta, v^2 A^-1). */
void
BanditDrawTheta(const BanditState *s, const double *mean, double v, pg_prng_state *rng, double *out)
{
	double		z[BANDIT_MAX_DIM];
	double		delta[BANDIT_MAX_DIM];
	int			i;

	BanditNormals(rng, z, s->d);
	BanditBackSolve(s->L, z, delta, s->d);
	for (i = 0; i < s->d; i++)
		out[i] = mean[i] + v * delta[i];
}

/*
 * x' M x over the non-zero entries of x (indices nz[0..nnz-1]); M is
 * symmetric, d x d.
 */
double
BanditSparseQuad(const double *x, const int *nz, int nnz, const double *M, int d)
{
	double		s = 0.0;
	int			i,
				j;

	for (i = 0; i < nnz; i++)
	{
		double		row = 0.0;

		for (j = 0; j < i; j++)
			row += M[nz[i] * d + nz[j]] * x[nz[j]];
		s += x[nz[i]] * (2.0 * row + M[nz[i] * d + nz[i]] * x[nz[i]]);
	}
	return s;
}
