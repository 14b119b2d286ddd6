// Shared-memory barriers (mbarrier, sm_80+; the .shared::cta spellings need PTX 7.8) and
// the other synchronisation the warp-specialised sm_90a prefill uses. An mbarrier counts
// arrivals; when `count` threads have arrived (and, for the cp.async form, their copies
// have landed) its phase completes and the parity a waiter watches flips. Waiting on
// parity P returns once the phase with parity P has completed; a fresh barrier is in
// phase 0, so waiting on parity 1 passes at once (what lets a producer fill every slot of
// an empty ring before any consumer has released one).
#pragma once

namespace plx::sm90 {

__device__ __forceinline__ void mbar_init(unsigned bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
// Makes the initialisation visible to the other threads (and the async units) before use.
__device__ __forceinline__ void mbar_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }

__device__ __forceinline__ void mbar_arrive(unsigned bar) {
  asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(bar) : "memory");
}
// The phase cannot complete before every cp.async this thread issued so far has landed
// (without .noinc the barrier's pending count is raised for them, so the thread still
// arrives itself with mbar_arrive, as CUTLASS's cp.async pipelines do).
__device__ __forceinline__ void mbar_arrive_cp_async(unsigned bar) {
  asm volatile("cp.async.mbarrier.arrive.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}

__device__ __forceinline__ bool mbar_try_wait(unsigned bar, unsigned parity) {
  unsigned done;
  asm volatile(
      "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(done)
      : "r"(bar), "r"(parity)
      : "memory");
  return done != 0;
}
__device__ __forceinline__ void mbar_wait(unsigned bar, unsigned parity) {
  while (!mbar_try_wait(bar, parity)) {
  }
}

// Orders this thread's generic-proxy shared-memory writes (st.shared, cp.async after it
// landed) before later async-proxy reads (wgmma operands).
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// Bulk asynchronous reduction (sm_90): global[dst .. dst + bytes) += shared[src ..) as
// fp32, performed at L2 (16-byte aligned, bytes a multiple of 16). Tracked per thread in
// bulk groups: commit after issuing; wait_read<0> before the source is overwritten, wait<0>
// before the CTA exits.
__device__ __forceinline__ void bulk_reduce_add_f32(float* dst, unsigned src, unsigned bytes) {
  asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(dst), "r"(src),
               "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void bulk_wait_read0() { asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory"); }
__device__ __forceinline__ void bulk_wait0() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }

// Barrier among `threads` threads (a multiple of 32) on hardware barrier `id` (0 is
// __syncthreads'; the kernel uses 1 + consumer warpgroup).
__device__ __forceinline__ void named_barrier_sync(unsigned id, unsigned threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Arrives on named barrier `id` without waiting: `threads` counts the waiters' sync and the
// arrivers together (the ping-pong turns of prefill_sm90.cuh: 128 + 128).
__device__ __forceinline__ void named_barrier_arrive(unsigned id, unsigned threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// ---- Thread-block clusters (sm_90): distributed shared memory -------------------------
// This CTA's rank in its cluster (%cluster_ctarank).
__device__ __forceinline__ unsigned cluster_ctarank() {
  unsigned r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
}
// The shared::cluster address of `addr` (a shared::cta address of this CTA's layout) in the
// shared memory of cluster CTA `rank`.
__device__ __forceinline__ unsigned cluster_map(unsigned addr, unsigned rank) {
  unsigned r;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(r) : "r"(addr), "r"(rank));
  return r;
}
// Every thread of every CTA of the cluster (not .aligned: the callers may sit at different
// program points, e.g. the producer and the consumer warpgroups). release / acquire at
// cluster scope: what a thread wrote before its arrive is visible to every thread after
// the wait, and no CTA leaves before the others arrived.
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;\n" ::: "memory");
}
// Arrives on an mbarrier of another CTA of the cluster (remote = cluster_map(...)); release
// at cluster scope orders this thread's earlier memory accesses (and, through a preceding
// __syncwarp, its warp's) before the arrival.
__device__ __forceinline__ void mbar_arrive_remote(unsigned remote) {
  asm volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];\n" ::"r"(remote) : "memory");
}
// mbar_wait with acquire at cluster scope: the waiter sees what the remote arrivers wrote.
__device__ __forceinline__ void mbar_wait_cluster(unsigned bar, unsigned parity) {
  unsigned done = 0;
  while (!done) {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, "
        "p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  }
}
__device__ __forceinline__ void st_cluster_v4(unsigned remote, float a, float b, float c, float d) {
  asm volatile("st.shared::cluster.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"r"(remote), "f"(a), "f"(b), "f"(c), "f"(d)
               : "memory");
}

// Warpgroup register reallocation (sm_90a): every thread of the warpgroup executes it.
template <int N>
__device__ __forceinline__ void regs_dealloc() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void regs_alloc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

}  // namespace plx::sm90
