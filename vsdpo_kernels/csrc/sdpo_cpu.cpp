// Fused epilogue of the linear SDPO + GRPO loss on the CPU.
//
// The caller multiplies a chunk of hidden states by the lm_head weight (student and teacher logits,
// [n, V] float32, raw: not yet divided by the temperature). These two functions then do everything
// else on those blocks while each row is hot in cache:
//   block_stats: log-sum-exp of student and teacher, the target's log-prob, the student entropy, the
//                generalized JSD D and its gradient sum G (maths in vsdpo_kernels/stats.py);
//   block_grad_: overwrites the student block with dL/dlogits, given a = dL/dlogp and b = dL/dD.
// Rows are independent and split across threads with at::parallel_for.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cfloat>
#include <cmath>

namespace {

inline float row_max(const float* z, int64_t V, float scale) {
  float m = -FLT_MAX;
  for (int64_t v = 0; v < V; ++v) m = std::max(m, z[v] * scale);
  return m;
}

// lm = log((1-beta) ps + beta pt). Where both probabilities underflow, the clamp keeps lm finite;
// the terms it enters are then multiplied by a zero probability.
inline float log_mixture(float ps, float pt, float beta) {
  return std::log(std::max((1.f - beta) * ps + beta * pt, FLT_MIN));
}

struct RowStats {
  float lse_s, lse_t, logp, entropy, divergence, G;
};

RowStats row_stats(const float* zs, const float* zt, int64_t V, int64_t y, float inv_tau, float beta) {
  RowStats r{};
  const float max_s = row_max(zs, V, inv_tau);
  float sum_s = 0.f, weighted_s = 0.f;
  for (int64_t v = 0; v < V; ++v) {
    const float s = zs[v] * inv_tau;
    const float e = std::exp(s - max_s);
    sum_s += e;
    weighted_s += e * s;
  }
  r.lse_s = max_s + std::log(sum_s);
  r.logp = zs[y] * inv_tau - r.lse_s;
  r.entropy = r.lse_s - weighted_s / sum_s;
  if (zt == nullptr) return r;

  const float max_t = row_max(zt, V, inv_tau);
  float sum_t = 0.f, cross = 0.f;
  if (beta == 0.f) {  // cross = sum_v e^(t - max_t) (t - s)
    for (int64_t v = 0; v < V; ++v) {
      const float s = zs[v] * inv_tau, t = zt[v] * inv_tau;
      const float e = std::exp(t - max_t);
      sum_t += e;
      cross += e * (t - s);
    }
  } else if (beta == 1.f) {  // cross = sum_v e^(s - max_s) (s - t)
    for (int64_t v = 0; v < V; ++v) {
      const float s = zs[v] * inv_tau, t = zt[v] * inv_tau;
      sum_t += std::exp(t - max_t);
      cross += std::exp(s - max_s) * (s - t);
    }
  } else {
    for (int64_t v = 0; v < V; ++v) sum_t += std::exp(zt[v] * inv_tau - max_t);
  }
  r.lse_t = max_t + std::log(sum_t);
  if (beta == 0.f) {
    r.divergence = cross / sum_t - r.lse_t + r.lse_s;
    r.G = -1.f;
  } else if (beta == 1.f) {
    r.divergence = cross / sum_s - r.lse_s + r.lse_t;
    r.G = r.divergence;
  } else {
    float d = 0.f, g = 0.f;
    for (int64_t v = 0; v < V; ++v) {
      const float ls = zs[v] * inv_tau - r.lse_s, lt = zt[v] * inv_tau - r.lse_t;
      const float ps = std::exp(ls), pt = std::exp(lt);
      const float lm = log_mixture(ps, pt, beta);
      const float student_part = ps * (ls - lm);
      d += beta * pt * (lt - lm) + (1.f - beta) * student_part;
      g += student_part;
    }
    r.divergence = d;
    r.G = (1.f - beta) * g;
  }
  return r;
}

void check_block(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, ": expected a CPU tensor, got ", t.device());
  TORCH_CHECK(t.scalar_type() == torch::kFloat32, name, ": expected float32, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 2 && t.is_contiguous(), name, ": expected a contiguous [n, V] block");
}

}  // namespace

// Returns (logp, entropy, lse_s, lse_t, divergence, G), each [n] float32 (teacher ones empty without zt).
std::vector<torch::Tensor> block_stats(torch::Tensor zs, c10::optional<torch::Tensor> zt_opt, torch::Tensor y,
                                       double inv_tau, double beta) {
  check_block(zs, "zs");
  const bool has_teacher = zt_opt.has_value() && zt_opt->defined();
  if (has_teacher) {
    check_block(*zt_opt, "zt");
    TORCH_CHECK(zt_opt->sizes() == zs.sizes(), "zt: expected the shape of zs");
  }
  TORCH_CHECK(y.scalar_type() == torch::kInt64 && y.numel() == zs.size(0), "y: expected [n] int64");
  const int64_t n = zs.size(0), V = zs.size(1);
  auto opts = zs.options();
  auto logp = torch::empty({n}, opts), entropy = torch::empty({n}, opts), lse_s = torch::empty({n}, opts);
  auto lse_t = torch::empty({has_teacher ? n : 0}, opts), divergence = torch::empty({has_teacher ? n : 0}, opts),
       G = torch::empty({has_teacher ? n : 0}, opts);
  const float* zs_p = zs.data_ptr<float>();
  const float* zt_p = has_teacher ? zt_opt->data_ptr<float>() : nullptr;
  const int64_t* y_p = y.data_ptr<int64_t>();
  float *logp_p = logp.data_ptr<float>(), *entropy_p = entropy.data_ptr<float>(), *lse_s_p = lse_s.data_ptr<float>();
  float *lse_t_p = lse_t.data_ptr<float>(), *div_p = divergence.data_ptr<float>(), *G_p = G.data_ptr<float>();
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      RowStats r = row_stats(zs_p + i * V, zt_p ? zt_p + i * V : nullptr, V, y_p[i], (float)inv_tau, (float)beta);
      logp_p[i] = r.logp;
      entropy_p[i] = r.entropy;
      lse_s_p[i] = r.lse_s;
      if (zt_p) {
        lse_t_p[i] = r.lse_t;
        div_p[i] = r.divergence;
        G_p[i] = r.G;
      }
    }
  });
  return {logp, entropy, lse_s, lse_t, divergence, G};
}

// zs <- dL/d(raw student logits) = (a (1[v=y] - ps) + b (g - ps G)) / tau, in place.
void block_grad_(torch::Tensor zs, c10::optional<torch::Tensor> zt_opt, torch::Tensor y, torch::Tensor lse_s,
                 c10::optional<torch::Tensor> lse_t_opt, c10::optional<torch::Tensor> G_opt, torch::Tensor a,
                 torch::Tensor b, double inv_tau, double beta) {
  check_block(zs, "zs");
  const bool has_teacher = zt_opt.has_value() && zt_opt->defined();
  const int64_t n = zs.size(0), V = zs.size(1);
  float* zs_p = zs.data_ptr<float>();
  const float* zt_p = has_teacher ? zt_opt->data_ptr<float>() : nullptr;
  const float* lse_t_p = has_teacher ? lse_t_opt->data_ptr<float>() : nullptr;
  const float* G_p = has_teacher ? G_opt->data_ptr<float>() : nullptr;
  const int64_t* y_p = y.data_ptr<int64_t>();
  const float* lse_s_p = lse_s.data_ptr<float>();
  const float* a_p = a.data_ptr<float>();
  const float* b_p = b.data_ptr<float>();
  const float it_outer = (float)inv_tau, bt_outer = (float)beta;
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    const float it = it_outer, bt = bt_outer;  // locals: the stores below cannot alias them
    for (int64_t i = begin; i < end; ++i) {
      float* __restrict__ row = zs_p + i * V;
      const float ai = a_p[i], bi = b_p[i], ls0 = lse_s_p[i];
      if (zt_p == nullptr || bi == 0.f) {
        for (int64_t v = 0; v < V; ++v) row[v] = -ai * std::exp(row[v] * it - ls0) * it;
      } else {
        const float* __restrict__ trow = zt_p + i * V;
        const float lt0 = lse_t_p[i], Gi = G_p[i];
        if (bt == 0.f) {
          for (int64_t v = 0; v < V; ++v) {
            const float ps = std::exp(row[v] * it - ls0), pt = std::exp(trow[v] * it - lt0);
            row[v] = (-ai * ps + bi * (-pt - ps * Gi)) * it;
          }
        } else if (bt == 1.f) {
          for (int64_t v = 0; v < V; ++v) {
            const float ls = row[v] * it - ls0, lt = trow[v] * it - lt0;
            const float ps = std::exp(ls);
            row[v] = (-ai * ps + bi * ps * (ls - lt - Gi)) * it;
          }
        } else {
          for (int64_t v = 0; v < V; ++v) {
            const float ls = row[v] * it - ls0, lt = trow[v] * it - lt0;
            const float ps = std::exp(ls);
            const float lm = log_mixture(ps, std::exp(lt), bt);
            row[v] = (-ai * ps + bi * ps * ((1.f - bt) * (ls - lm) - Gi)) * it;
          }
        }
      }
      row[y_p[i]] += ai * it;
    }
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("block_stats", &block_stats, "per-token statistics of a logits block");
  m.def("block_grad_", &block_grad_, "dL/dlogits of a logits block, in place");
}
