/* word2vec's SGD loop over a chunk of windows, one window after another, as word2vec C and gensim's Cython do.
 *
 * hfssl/word2vec/fused.py compiles this file on first use and calls it through ctypes (which releases the GIL, so
 * worker threads train their chunks at the same time on shared tables: Hogwild). The windows come from
 * hfssl/word2vec/windows.py::build_ragged_windows, the same windows and negatives the batched PyTorch steps of
 * update.py train on; the math is the one update.py's docstring derives, applied window by window instead of
 * summed over a batch:
 *
 *     g_t  = lr * (label_t - sigmoid(v . u_t))    label 1 for the centre word, 0 for a negative
 *     e   += g_t u_t      (with u_t read before its own update)
 *     u_t += g_t v
 *     v   += e            (CBOW: every context word of the window gets the whole e)
 *
 * Skip-gram: v is each context word's input vector in turn, predicting the centre word's output vector (gensim's
 * orientation), with the window's negatives. CBOW: v is the mean of the context words' input vectors (gensim's
 * cbow_mean=1). A negative equal to the centre word is skipped (word2vec C).
 *
 * The loss is not computed here (a log per score would cost a quarter of the loop): each score goes to `z` as
 * sign * (v . u_t), sign -1 for the centre word and +1 for a negative, so that the loss of the term is
 * softplus(z); a skipped negative gets -INFINITY (softplus 0). The caller sums softplus(z) in one vectorised call.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float dot(const float *restrict a, const float *restrict b, int64_t d) {
    float s = 0.f;
    for (int64_t i = 0; i < d; i++) s += a[i] * b[i];
    return s;
}

static inline void axpy(float g, const float *restrict x, float *restrict y, int64_t d) {
    for (int64_t i = 0; i < d; i++) y[i] += g * x[i];
}

/* One input vector v against the centre word and its window's negatives; accumulates into e, writes 1 + k scores. */
static inline void score_targets(const float *restrict v, float *restrict w_out, int64_t d, int64_t center,
                                 const int64_t *restrict negatives, int64_t k, float lr, float *restrict e,
                                 float *restrict z) {
    for (int64_t t = 0; t <= k; t++) {
        int64_t word = t == 0 ? center : negatives[t - 1];
        if (t > 0 && word == center) {
            z[t] = -INFINITY;
            continue;
        }
        float *restrict u = w_out + word * d;
        float f = dot(v, u, d);
        float label = t == 0 ? 1.f : 0.f;
        float g = (label - 1.f / (1.f + expf(-f))) * lr;
        z[t] = t == 0 ? -f : f;
        axpy(g, u, e, d);
        axpy(g, v, u, d);
    }
}

/* n windows: centers [n], contexts [sum(lengths)] (window after window), lengths [n] (each >= 1), negatives [n, k].
 * Tables are row-major [rows, d] float32, updated in place. z: [n, 1 + k] (CBOW) or [sum(lengths), 1 + k]
 * (skip-gram). d must be at most 4096 (fused.py checks). */
void train_windows(float *w_in, float *w_out, int64_t d, const int64_t *centers, const int64_t *contexts,
                   const int64_t *lengths, const int64_t *negatives, int64_t k, int64_t n, float lr, int sg,
                   float *z) {
    float h[4096], e[4096];
    const int64_t *ctx = contexts;
    for (int64_t i = 0; i < n; i++) {
        int64_t len = lengths[i];
        const int64_t *neg = negatives + i * k;
        if (i + 1 < n) {  /* prefetch the next window's rows: their cache misses overlap this window's arithmetic */
            for (int64_t c = 0; c < lengths[i + 1]; c++)
                for (int64_t j = 0; j < d; j += 16) __builtin_prefetch(w_in + ctx[len + c] * d + j);
            for (int64_t t = 0; t <= k; t++)
                for (int64_t j = 0; j < d; j += 16) __builtin_prefetch(w_out + (t == 0 ? centers[i + 1] : neg[k + t - 1]) * d + j);
        }
        if (sg) {
            for (int64_t c = 0; c < len; c++) {
                float *v = w_in + ctx[c] * d;
                memset(e, 0, sizeof(float) * d);
                score_targets(v, w_out, d, centers[i], neg, k, lr, e, z);
                axpy(1.f, e, v, d);
                z += k + 1;
            }
        } else {
            memset(h, 0, sizeof(float) * d);
            memset(e, 0, sizeof(float) * d);
            for (int64_t c = 0; c < len; c++) axpy(1.f, w_in + ctx[c] * d, h, d);
            float inv = 1.f / (float)len;
            for (int64_t j = 0; j < d; j++) h[j] *= inv;
            score_targets(h, w_out, d, centers[i], neg, k, lr, e, z);
            for (int64_t c = 0; c < len; c++) axpy(1.f, e, w_in + ctx[c] * d, d);
            z += k + 1;
        }
        ctx += len;
    }
}
