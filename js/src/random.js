// numpy's legacy RandomState (MT19937), the generator mof.runtime's Sampler draws from: the same
// integer seed gives the same uniform draws as np.random.RandomState(seed).random_sample().

const N = 624;
const M = 397;

export class RandomState {
  /** @param {number} seed an integer in [0, 2**32 - 1] (numpy's init_genrand, as RandomState(int)) */
  constructor(seed) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new RangeError('Seed must be between 0 and 2**32 - 1');
    }
    this.mt = new Uint32Array(N);
    this.mt[0] = seed >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = this.mt[i - 1] ^ (this.mt[i - 1] >>> 30);
      // 1812433253 * prev + i, modulo 2**32, without losing bits to float64
      this.mt[i] = (((((prev & 0xffff0000) >>> 16) * 1812433253) << 16) + (prev & 0x0000ffff) * 1812433253 + i) >>> 0;
    }
    this.index = N;
  }

  /** The next 32-bit output (genrand_int32). */
  nextUint32() {
    const mt = this.mt;
    if (this.index >= N) {
      for (let k = 0; k < N; k++) {
        const y = (mt[k] & 0x80000000) | (mt[(k + 1) % N] & 0x7fffffff);
        mt[k] = mt[(k + M) % N] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      this.index = 0;
    }
    let y = mt[this.index++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** A float64 in [0, 1) with 53 random bits: numpy's random_sample(). */
  randomSample() {
    const a = this.nextUint32() >>> 5;
    const b = this.nextUint32() >>> 6;
    return (a * 67108864.0 + b) / 9007199254740992.0;
  }
}

/** A fresh random seed (what SamplingConfig's seed null means). */
export function freshSeed() {
  const c = globalThis.crypto;
  if (c && c.getRandomValues) return c.getRandomValues(new Uint32Array(1))[0];
  return Math.floor(Math.random() * 0x100000000);
}
