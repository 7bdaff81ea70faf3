#include "worker/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <utility>

namespace shardserve {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Candidate {
  float logit;
  int32_t token_id;
};

// The ranking order: higher logit first, lower id first on ties. A functor rather than a
// function so that the standard algorithms inline it.
struct Better {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.logit > b.logit || (a.logit == b.logit && a.token_id < b.token_id);
  }
};

// Tokens that survive truncation. `all` means no truncation was requested, so the draw scans the
// logits directly instead of materialising a vocab-sized candidate list.
struct Survivors {
  bool all = false;
  std::vector<Candidate> kept;  // unspecified order
  float max_logit = 0.0f;
  float inv_temperature = 1.0f;

  // Unnormalised probability in [0, 1]: exactly 1 for the most likely token.
  float Weight(float logit) const { return std::exp((logit - max_logit) * inv_temperature); }
};

bool InVocab(int32_t token_id, size_t vocab_size) {
  return token_id >= 0 && static_cast<size_t>(token_id) < vocab_size;
}

// The lowest-id maximum; token 0 when every logit is -inf. NaN logits never win (a NaN at id 0
// makes it 0).
int32_t Argmax(absl::Span<const float> logits) {
  // Greedy decoding runs this over every sequence's whole vocabulary each step, so it is two
  // passes that compilers vectorise instead of one compare-and-branch per logit: the maximum,
  // kept in eight independent running maxima, then the first id holding it. Written as
  // `x > m ? x : m`, a NaN x never replaces m, as in a scan with a strict comparison.
  const float* x = logits.data();
  const size_t n = logits.size();
  float lane_max[8];
  for (float& m : lane_max) m = x[0];
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) lane_max[l] = x[i + l] > lane_max[l] ? x[i + l] : lane_max[l];
  }
  float best = x[0];
  for (float m : lane_max) best = m > best ? m : best;
  for (; i < n; ++i) best = x[i] > best ? x[i] : best;
  // best is x[0] (perhaps NaN) or a larger logit; equal values (+0 and -0 included) tie to the
  // lower id, as the strict comparison of a single scan would.
  for (size_t j = 0; j < n; ++j) {
    if (x[j] == best) return static_cast<int32_t>(j);
  }
  return 0;  // x[0] is NaN
}

// The k best candidates, 0 < k < logits.size(), in unspecified order.
std::vector<Candidate> TopK(absl::Span<const float> logits, int k) {
  std::vector<Candidate> out;
  const size_t vocab = logits.size();
  if (static_cast<size_t>(k) * 64 <= vocab) {
    // Small k: one pass with a heap whose top is the worst kept candidate; most tokens are
    // rejected by a single comparison.
    out.reserve(k);
    for (size_t i = 0; i < vocab; ++i) {
      const Candidate c{logits[i], static_cast<int32_t>(i)};
      if (out.size() < static_cast<size_t>(k)) {
        out.push_back(c);
        std::push_heap(out.begin(), out.end(), Better());
      } else if (Better()(c, out.front())) {
        std::pop_heap(out.begin(), out.end(), Better());
        out.back() = c;
        std::push_heap(out.begin(), out.end(), Better());
      }
    }
    return out;
  }
  out.resize(vocab);
  for (size_t i = 0; i < vocab; ++i) out[i] = {logits[i], static_cast<int32_t>(i)};
  std::nth_element(out.begin(), out.begin() + k, out.end(), Better());
  out.resize(k);
  return out;
}

// Buckets weights in (0, 1] by their float bit pattern, which is monotone in the value: bucket 0
// holds exactly 1, and each power of two spans 2^(23 - kBucketShift) buckets.
constexpr int kBucketShift = 18;
constexpr uint32_t kOneBits = 0x3f800000u;  // 1.0f
constexpr int kNumBuckets = (kOneBits >> kBucketShift) + 1;

int WeightBucket(float weight) {
  uint32_t bits;
  std::memcpy(&bits, &weight, sizeof(bits));
  return static_cast<int>((kOneBits - std::min(bits, kOneBits)) >> kBucketShift);
}

// Top-p, then min-p, over the tokens produced by `for_each(fn)` (the top-k set or the whole
// vocabulary; it must visit the same tokens in the same order on every call). Appends survivors to
// s->kept. A weight histogram finds the bucket where the cumulative mass crosses top_p, so only
// that bucket is sorted: no full sort of a 150k vocabulary when the nucleus is wide.
template <typename ForEach>
void KeepTopPThenMinP(ForEach for_each, const SamplingParams& params, Survivors* s) {
  static thread_local std::vector<float> weights;
  std::vector<double> bucket_mass(kNumBuckets, 0.0);
  weights.clear();
  double total_mass = 0.0;
  for_each([&](const Candidate& c) {
    const float w = s->Weight(c.logit);
    weights.push_back(w);
    total_mass += w;
    if (w > 0.0f) bucket_mass[WeightBucket(w)] += w;
  });
  const double target = params.top_p * total_mass;
  int cut_bucket = 0;
  double mass_before = 0.0;
  while (cut_bucket < kNumBuckets - 1 && mass_before + bucket_mass[cut_bucket] < target) {
    mass_before += bucket_mass[cut_bucket++];
  }

  auto passes_min_p = [&](float w) { return w > 0.0f && w >= params.min_p; };
  std::vector<Candidate> boundary;
  size_t idx = 0;
  for_each([&](const Candidate& c) {
    const float w = weights[idx++];
    if (w <= 0.0f) return;
    const int bucket = WeightBucket(w);
    if (bucket < cut_bucket) {
      if (passes_min_p(w)) s->kept.push_back(c);
    } else if (bucket == cut_bucket) {
      boundary.push_back(c);
    }
  });
  // A token is kept iff the mass ranked strictly before it is below the target.
  std::sort(boundary.begin(), boundary.end(), Better());
  for (const Candidate& c : boundary) {
    if (mass_before >= target) break;
    const float w = s->Weight(c.logit);
    if (passes_min_p(w)) s->kept.push_back(c);
    mass_before += w;
  }
}

// REQUIRES: max_logit == max(logits) is finite.
Survivors Truncate(absl::Span<const float> logits, const SamplingParams& params, float max_logit) {
  Survivors s;
  s.max_logit = max_logit;
  s.inv_temperature = 1.0f / params.temperature;
  const size_t vocab = logits.size();
  const bool use_top_k = params.top_k_enabled() && static_cast<size_t>(params.top_k) < vocab;
  const bool use_top_p = params.top_p < 1.0f;
  if (!use_top_k && !use_top_p && params.min_p == 0.0f) {
    s.all = true;
    return s;
  }
  // Probability ratios to the best token survive renormalisation, so min-p is the same weight
  // threshold whichever filters ran before it.
  auto passes_min_p = [&](float logit) {
    const float w = s.Weight(logit);
    return w > 0.0f && w >= params.min_p;
  };
  if (use_top_k) {
    std::vector<Candidate> top_k = TopK(logits, params.top_k);
    if (use_top_p) {
      KeepTopPThenMinP(
          [&](auto fn) {
            for (const Candidate& c : top_k) fn(c);
          },
          params, &s);
    } else {
      for (const Candidate& c : top_k) {
        if (passes_min_p(c.logit)) s.kept.push_back(c);
      }
    }
  } else if (use_top_p) {
    KeepTopPThenMinP(
        [&](auto fn) {
          for (size_t i = 0; i < vocab; ++i) fn(Candidate{logits[i], static_cast<int32_t>(i)});
        },
        params, &s);
  } else {
    for (size_t i = 0; i < vocab; ++i) {
      if (passes_min_p(logits[i])) s.kept.push_back({logits[i], static_cast<int32_t>(i)});
    }
  }
  return s;
}

double Uniform01(Rng& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

int32_t Draw(absl::Span<const float> logits, const Survivors& s, Rng& rng) {
  const double u = Uniform01(rng);
  if (s.all) {
    // One exp per token: over a 150k vocabulary exp is the cost of sampling.
    static thread_local std::vector<float> weights;
    weights.resize(logits.size());
    double mass = 0.0;
    for (size_t i = 0; i < logits.size(); ++i) {
      weights[i] = s.Weight(logits[i]);
      mass += weights[i];
    }
    const double target = u * mass;
    double acc = 0.0;
    int32_t last_positive = 0;  // the best token has weight 1, so this is always overwritten
    for (size_t i = 0; i < logits.size(); ++i) {
      if (weights[i] <= 0.0f) continue;
      acc += weights[i];
      last_positive = static_cast<int32_t>(i);
      if (acc > target) return last_positive;
    }
    return last_positive;  // rounding left the target at the very end
  }
  double mass = 0.0;
  for (const Candidate& c : s.kept) mass += s.Weight(c.logit);
  const double target = u * mass;
  double acc = 0.0;
  for (const Candidate& c : s.kept) {
    acc += s.Weight(c.logit);
    if (acc > target) return c.token_id;
  }
  return s.kept.back().token_id;
}

// log(sum(exp(logits))), accumulated in double.
double RawLogSumExp(absl::Span<const float> logits) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  if (max_logit == kNegInf) return kNegInf;
  double sum = 0.0;
  for (float l : logits) sum += std::exp(l - max_logit);
  return max_logit + std::log(sum);
}

std::vector<TokenLogprob> TopLogprobs(absl::Span<const float> logits, int n, double log_z) {
  std::vector<Candidate> best;
  if (static_cast<size_t>(n) < logits.size()) {
    best = TopK(logits, n);
  } else {
    for (size_t i = 0; i < logits.size(); ++i) best.push_back({logits[i], static_cast<int32_t>(i)});
  }
  std::sort(best.begin(), best.end(), Better());
  std::vector<TokenLogprob> out;
  out.reserve(best.size());
  for (const Candidate& c : best) {
    out.push_back({c.token_id, static_cast<float>(c.logit - log_z)});
  }
  return out;
}

void ProcessLogits(absl::Span<float> logits, const SamplingParams& params,
                   const SequenceHistory& history, absl::Span<const int32_t> eos_token_ids,
                   std::vector<Candidate>* saved) {
  const size_t vocab = logits.size();
  auto save = [&](int32_t id) {
    if (saved != nullptr) saved->push_back({logits[id], id});
  };
  if (params.repetition_penalty != 1.0f) {
    const float r = params.repetition_penalty;
    for (int32_t id : history.seen_token_ids()) {
      if (!InVocab(id, vocab)) continue;
      save(id);
      float& l = logits[id];
      l = l > 0.0f ? l / r : l * r;
    }
  }
  if (params.frequency_penalty != 0.0f || params.presence_penalty != 0.0f) {
    for (const auto& [id, count] : history.output_token_counts()) {
      if (!InVocab(id, vocab)) continue;
      save(id);
      logits[id] -= params.frequency_penalty * static_cast<float>(count) + params.presence_penalty;
    }
  }
  if (history.num_output_tokens() < params.min_tokens) {
    auto suppress = [&](int32_t id) {
      if (!InVocab(id, vocab)) return;
      save(id);
      logits[id] = kNegInf;
    };
    for (int32_t id : params.stop_token_ids) suppress(id);
    // With ignore_eos, EOS is an ordinary token and min_tokens does not concern it.
    if (!params.ignore_eos) {
      for (int32_t id : eos_token_ids) suppress(id);
    }
  }
}

}  // namespace

Sampler::Sampler(std::vector<int32_t> eos_token_ids) : eos_token_ids_(std::move(eos_token_ids)) {}

SampleResult Sampler::Sample(absl::Span<float> logits, const SamplingParams& params,
                             const SequenceHistory& history, Rng& rng) const {
  SampleResult result;
  const bool want_logprobs = params.logprobs >= 0;
  double log_z = 0.0;
  std::vector<Candidate> saved;
  if (want_logprobs) {
    log_z = RawLogSumExp(logits);
    if (params.logprobs > 0) result.top_logprobs = TopLogprobs(logits, params.logprobs, log_z);
  }
  ProcessLogits(logits, params, history, eos_token_ids_, want_logprobs ? &saved : nullptr);

  const int32_t best = Argmax(logits);
  if (params.greedy() || logits[best] == kNegInf) {
    result.token_id = best;
  } else {
    result.token_id = Draw(logits, Truncate(logits, params, logits[best]), rng);
  }

  if (want_logprobs) {
    // Truncation never writes to `logits`, so only penalised entries need their raw value back;
    // the first saved value of an id is the raw one.
    float raw = logits[result.token_id];
    for (const Candidate& c : saved) {
      if (c.token_id == result.token_id) {
        raw = c.logit;
        break;
      }
    }
    result.logprob = static_cast<float>(raw - log_z);
  }
  return result;
}

std::vector<TokenProb> Sampler::Distribution(absl::Span<float> logits, const SamplingParams& params,
                                             const SequenceHistory& history) const {
  ProcessLogits(logits, params, history, eos_token_ids_, nullptr);
  const int32_t best = Argmax(logits);
  if (params.greedy() || logits[best] == kNegInf) return {{best, 1.0}};

  Survivors s = Truncate(logits, params, logits[best]);
  if (s.all) {
    for (size_t i = 0; i < logits.size(); ++i) {
      if (s.Weight(logits[i]) > 0.0f) s.kept.push_back({logits[i], static_cast<int32_t>(i)});
    }
  }
  std::sort(s.kept.begin(), s.kept.end(), Better());
  double mass = 0.0;
  for (const Candidate& c : s.kept) mass += s.Weight(c.logit);
  std::vector<TokenProb> out;
  out.reserve(s.kept.size());
  for (const Candidate& c : s.kept) out.push_back({c.token_id, s.Weight(c.logit) / mass});
  return out;
}

Rng Sampler::MakeRng(const SamplingParams& params) {
  if (params.seed.has_value()) return Rng(*params.seed);
  static std::mutex mu;
  static std::random_device* device = new std::random_device;
  std::lock_guard<std::mutex> lock(mu);
  const uint64_t seed = (static_cast<uint64_t>((*device)()) << 32) ^ (*device)();
  return Rng(seed);
}

}  // namespace shardserve
