"""`make bench`: every benchmark, printing ratios against baselines measured in the same process."""

from benchmarks import chain_throughput, compile_time, sgld_throughput

if __name__ == "__main__":
    compile_time.main()
    print()
    sgld_throughput.main([])
    print()
    chain_throughput.main([])
