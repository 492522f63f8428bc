# Data stage: verified Fashion-MNIST, captioned compositions, the 2-D tree of Gaussians.


rule fashion_mnist:
    input:
        fashion_mnist_source,
    output:
        "results/data/fashion_mnist.npz",
    log:
        "results/logs/data/fashion_mnist.log",
    params:
        src=config["data"]["fashion_mnist"]["dir"],
        url=fashion_mnist_url(),
    shell:
        "guidance-repro prepare-fashion-mnist --source {params.src:q}"
        " --download-url={params.url:q} --out {output} > {log} 2>&1"


rule data_all:
    input:
        rules.fashion_mnist.output,
