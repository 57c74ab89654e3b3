#include "textflag.h"

// Folding constants for CRC-32C, bit-reflected: the pair for a distance of
// D bits is k(D+32), k(D-32), with k(n) = reflect32(x^n mod P) << 1 (see
// foldConst in crc32c_amd64_test.go, which checks every one of them). The
// low 64 bits of a 128-bit part are multiplied by the first, the high by
// the second.
DATA k2048<>+0(SB)/8, $0x0dcb17aa4
DATA k2048<>+8(SB)/8, $0x0b9e02b86
GLOBL k2048<>(SB), RODATA, $16

DATA k512<>+0(SB)/8, $0x0740eef02
DATA k512<>+8(SB)/8, $0x09e4addf8
GLOBL k512<>(SB), RODATA, $16

DATA k128<>+0(SB)/8, $0x0f20c0dfe
DATA k128<>+8(SB)/8, $0x14cd00bd6
GLOBL k128<>(SB), RODATA, $16

// FOLD moves lane acc forward by the distance in Z0 (four 128-bit parts
// at once) and adds the next 64 bytes for it, at mem.
#define FOLD(acc, tmp, mem) \
	VPCLMULQDQ $0x11, Z0, acc, tmp \
	VPCLMULQDQ $0x00, Z0, acc, acc \
	VPTERNLOGD $0x96, mem, tmp, acc

// LOAD4 starts the four lanes with the 256 bytes at SI and adds the CRC
// register in AX to the first.
#define LOAD4 \
	VMOVDQU64 (SI), Z1 \
	VMOVDQU64 64(SI), Z2 \
	VMOVDQU64 128(SI), Z3 \
	VMOVDQU64 192(SI), Z4 \
	VMOVQ     AX, X0 \
	VPXORQ    Z0, Z1, Z1

// STEP4 folds the four lanes over the next 256 bytes at SI.
#define STEP4 \
	FOLD(Z1, Z5, (SI)) \
	FOLD(Z2, Z6, 64(SI)) \
	FOLD(Z3, Z7, 128(SI)) \
	FOLD(Z4, Z8, 192(SI))

// FOLD2 moves the 128-bit X1 forward by the distance in X0 and adds x.
#define FOLD2(x) \
	MOVOA     X1, X5 \
	PCLMULQDQ $0x00, X0, X1 \
	PCLMULQDQ $0x11, X0, X5 \
	PXOR      X5, X1 \
	PXOR      x, X1

// REDUCE4 folds the four lanes into one, that lane's four 128-bit parts
// into X1, and X1 into the CRC register in AX. Folding keeps the message
// congruent: what is left is 16 bytes whose CRC (from a zero register) is
// the CRC of everything folded, and the CPU's CRC32 instruction takes 8
// bytes at a time.
#define REDUCE4 \
	VBROADCASTI32X4 k512<>+0(SB), Z0 \
	FOLD(Z1, Z5, Z2) \
	FOLD(Z1, Z5, Z3) \
	FOLD(Z1, Z5, Z4) \
	VEXTRACTI32X4 $1, Z1, X2 \
	VEXTRACTI32X4 $2, Z1, X3 \
	VEXTRACTI32X4 $3, Z1, X4 \
	VZEROUPPER \
	MOVOU k128<>+0(SB), X0 \
	FOLD2(X2) \
	FOLD2(X3) \
	FOLD2(X4) \
	MOVQ   X1, R10 \
	PEXTRQ $1, X1, R11 \
	XORL   AX, AX \
	CRC32Q R10, AX \
	CRC32Q R11, AX

// func fold(crc uint32, p []byte) uint32
// len(p) is a positive multiple of 256.
TEXT ·fold(SB), NOSPLIT, $0-36
	MOVL crc+0(FP), AX
	MOVQ p_base+8(FP), SI
	MOVQ p_len+16(FP), CX
	LOAD4
	ADDQ $256, SI
	SUBQ $256, CX
	JZ   done

	// The four lanes are independent, so the multiplier's latency
	// overlaps.
	VBROADCASTI32X4 k2048<>+0(SB), Z0

loop:
	STEP4
	ADDQ $256, SI
	SUBQ $256, CX
	JNZ  loop

done:
	REDUCE4
	MOVL AX, ret+32(FP)
	RET

// SCALAR takes the next 8 bytes (at off) of each of the three scalar streams
// (at R8, R8+R9 and R8+2*R9) into their CRC registers BX, DX and DI.
#define SCALAR(off) \
	CRC32Q off(R8), BX \
	CRC32Q off(R8)(R9*1), DX \
	CRC32Q off(R8)(R9*2), DI

// SHIFT advances the CRC register in AX over m zero bytes (X6 holds
// k(8m-32)) and adds the register in r.
#define SHIFT(r) \
	MOVQ      AX, X7 \
	PCLMULQDQ $0x00, X6, X7 \
	MOVQ      X7, R10 \
	XORL      AX, AX \
	CRC32Q    R10, AX \
	XORL      r, AX

// func hybrid(crc uint32, p []byte, m int, k uint64) uint32
// len(p) is 11*m, m a positive multiple of 32: the first 8*m bytes go
// through the vector lanes while three streams of m bytes each (the rest)
// go through the CRC32 instruction, whose unit the lanes leave idle, 32
// bytes of each per 256 of the lanes'. k is k(8m-32).
TEXT ·hybrid(SB), NOSPLIT, $0-52
	MOVL crc+0(FP), AX
	MOVQ p_base+8(FP), SI
	MOVQ m+32(FP), R9
	MOVQ R9, CX
	SHLQ $3, CX
	LEAQ (SI)(CX*1), R8

	XORL BX, BX
	XORL DX, DX
	XORL DI, DI
	LOAD4
	SCALAR(0)
	SCALAR(8)
	SCALAR(16)
	SCALAR(24)
	ADDQ $256, SI
	ADDQ $32, R8
	SUBQ $256, CX
	JZ   hdone
	VBROADCASTI32X4 k2048<>+0(SB), Z0

hloop:
	FOLD(Z1, Z5, (SI))
	SCALAR(0)
	FOLD(Z2, Z6, 64(SI))
	SCALAR(8)
	FOLD(Z3, Z7, 128(SI))
	SCALAR(16)
	FOLD(Z4, Z8, 192(SI))
	SCALAR(24)
	ADDQ $256, SI
	ADDQ $32, R8
	SUBQ $256, CX
	JNZ  hloop

hdone:
	REDUCE4
	MOVQ k+40(FP), X6
	SHIFT(BX)
	SHIFT(DX)
	SHIFT(DI)
	MOVL AX, ret+48(FP)
	RET
