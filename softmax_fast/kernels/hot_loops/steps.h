/*
 * hot_loops/steps.h: what the weight-gradient loops do with each gradient
 * they produce. Owns the steps (enum sf_step), the update of one weight by
 * each (SF_UPDATE_*, written once for scalars and GCC's vectors alike) and
 * SF_WITH_STEP, which compiles a loop once per step so that the step is
 * chosen outside it. Not a template; uses nothing. The narrow and GEMM
 * families and the plain loops (narrow_impl.h, gemm_impl.h, vectors_impl.h)
 * all update through it, so that the penalty and the momentum are fused into
 * the pass that writes the weights.
 *
 * The formulas are the reference's (kernels/reference.py): g is the data
 * gradient of one weight, scale * (X.T @ G)[j, c], w the weight (or, without
 * an update, the gradient's output), v its velocity, lr the batch's rate,
 * alpha the L2 penalty and mu the momentum.
 */
#ifndef SOFTMAX_FAST_HOT_LOOPS_STEPS_H
#define SOFTMAX_FAST_HOT_LOOPS_STEPS_H

enum sf_step {
    /* No update (loss_and_grad): w = g, w the gradient's output. */
    SF_GRADIENT = 0,
    /* No update, with the penalty: w = g + alpha * w, w holding the weights on entry. */
    SF_GRADIENT_PENALIZED = 1,
    /* Plain SGD: w -= lr * g, the expression of every release before the options (their bits). */
    SF_SGD = 2,
    /* SGD with the penalty: w -= lr * (g + alpha * w). */
    SF_SGD_PENALIZED = 3,
    /* Momentum: g += alpha * w; v = mu * v + g; w -= lr * v. */
    SF_MOMENTUM = 4,
    /* Nesterov's momentum: g += alpha * w; v = mu * v + g; w -= lr * (g + mu * v). */
    SF_NESTEROV = 5,
    /* No update, a later block of rows of one gradient (loss_and_grad): w += g, w the sum of the earlier blocks. */
    SF_GRADIENT_ADD = 6
};

/*
 * The update of one weight w (and its velocity v) by its gradient g, for
 * each step: expressions on lvalues w, v and g (g may be changed) of one
 * type, SF_T or a vector of SF_T, with lr, alpha and mu scalars. The steps
 * without velocities do not mention v.
 */
#define SF_UPDATE_GRADIENT(w, v, g, lr, alpha, mu) ((w) = (g))
#define SF_UPDATE_GRADIENT_PENALIZED(w, v, g, lr, alpha, mu) ((w) = (g) + (alpha) * (w))
#define SF_UPDATE_GRADIENT_ADD(w, v, g, lr, alpha, mu) ((w) = (w) + (g))
#define SF_UPDATE_SGD(w, v, g, lr, alpha, mu) ((w) = (w) - (lr) * (g))
#define SF_UPDATE_SGD_PENALIZED(w, v, g, lr, alpha, mu) ((w) = (w) - (lr) * ((g) + (alpha) * (w)))
#define SF_UPDATE_MOMENTUM(w, v, g, lr, alpha, mu)                                                                \
    ((g) += (alpha) * (w), (v) = (mu) * (v) + (g), (w) = (w) - (lr) * (v))
#define SF_UPDATE_NESTEROV(w, v, g, lr, alpha, mu)                                                                \
    ((g) += (alpha) * (w), (v) = (mu) * (v) + (g), (w) = (w) - (lr) * ((g) + (mu) * (v)))

/*
 * LOOP(UPDATE, VELOCITY) once per step: UPDATE the step's SF_UPDATE_* and
 * VELOCITY 1 where it reads and writes velocities (0: they may be NULL).
 * The switch is taken once, outside the loop that LOOP expands to.
 */
#define SF_WITH_STEP(step, LOOP)                                                                                   \
    switch (step) {                                                                                                \
    case SF_GRADIENT: LOOP(SF_UPDATE_GRADIENT, 0); break;                                                          \
    case SF_GRADIENT_PENALIZED: LOOP(SF_UPDATE_GRADIENT_PENALIZED, 0); break;                                      \
    case SF_GRADIENT_ADD: LOOP(SF_UPDATE_GRADIENT_ADD, 0); break;                                                  \
    case SF_SGD: LOOP(SF_UPDATE_SGD, 0); break;                                                                    \
    case SF_SGD_PENALIZED: LOOP(SF_UPDATE_SGD_PENALIZED, 0); break;                                                \
    case SF_MOMENTUM: LOOP(SF_UPDATE_MOMENTUM, 1); break;                                                          \
    default: LOOP(SF_UPDATE_NESTEROV, 1); break;                                                                   \
    }

#endif
